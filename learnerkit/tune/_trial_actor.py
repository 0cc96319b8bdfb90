"""A Ray Tune trainable for any installed algorithm and training loop: one Tune iteration
is one iteration of the host's ``Trainer`` (the row ``metrics.csv`` would get), its
checkpoints are the run's own checkpoint files, and each trial reserves a placement group
for its driver, its learners and its env runners.

A trial's config is the search space's values by ``--param`` name (``learning_rate``,
``model_config.hiddens``, ``module_hyperparameters.MODULE.KEY``), applied on top of the
base ``TrainConfig`` as ``learnerkit train --config`` would apply them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import attrs
from ray import tune

from learnerkit.loops._setup import seed_and_threads
from learnerkit.loops._trainer import Trainer
from learnerkit.loops.contract import TrainConfig
from learnerkit.tune._trials import trial_bundles, trial_config

__all__ = ["trainable", "trial_resources"]


def trial_resources(config: TrainConfig) -> tune.PlacementGroupFactory:
    """A placement group per trial (``trial_bundles``), packed on as few nodes as it fits:
    its learners and env runners start inside it (learnerkit reserves nothing more inside a
    trial), so trials run side by side without oversubscribing the cluster."""
    return tune.PlacementGroupFactory(trial_bundles(config), strategy="PACK")


class _TrainerTrainable(tune.Trainable):
    """One trial: a ``Trainer`` built on the first step, or from a checkpoint on restore
    (the trial's own, or another's when population-based training clones it)."""

    base: TrainConfig  # set by ``trainable``

    def setup(self, config: dict[str, Any]) -> None:
        self._trainer: Trainer | None = None
        self._configure(config)

    def _configure(self, config: dict[str, Any]) -> None:
        self._config = attrs.evolve(
            trial_config(self.base, config),
            out_dir=self.logdir,
            progress=False,
            resume=None,
            checkpoint_every=2**62,  # Tune asks for checkpoints (save_checkpoint)
        )

    def _build(self, resume: str | None = None) -> Trainer:
        if self._trainer is not None:
            self._trainer.close()
            self._trainer = None
        config = attrs.evolve(self._config, resume=resume)
        seed_and_threads(config.framework, config.seed)
        self._trainer = Trainer(config)
        return self._trainer

    def step(self) -> dict[str, Any]:
        trainer = self._trainer or self._build()
        row = trainer.step()
        done = trainer.timesteps >= trainer.stop_timesteps or trainer.reached()
        # Tune needs the metric in every result, and a number: a mean return before the
        # first episode ends is None in metrics.csv, NaN here (schedulers skip NaN).
        return {**{k: math.nan if v is None else v for k, v in row.items()}, "done": done}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        (self._trainer or self._build()).save_checkpoint(Path(checkpoint_dir))

    def load_checkpoint(self, checkpoint: str) -> None:
        # The host's resume: learners, optimizers, observation statistics, counters and
        # the loop's state from the checkpoint; this trial's hyperparameters on top.
        self._build(resume=str(checkpoint))

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        # The actor serves another trial, or this one with new values (PBT): its learners
        # are built anew, from the checkpoint Tune restores next if any.
        self.cleanup()
        self._configure(new_config)
        return True

    def cleanup(self) -> None:
        if self._trainer is not None:
            self._trainer.close()
            self._trainer = None


def trainable(config: TrainConfig) -> Any:
    """A Tune trainable training ``config`` with each trial's search-space values on top,
    with its resources attached (``tune.with_resources``, ``trial_resources`` of each
    trial's config). Pass it to ``tune.Tuner``::

        tuner = tune.Tuner(
            learnerkit.tune.trainable(TrainConfig(algorithm="ppo", env_id="CartPole-v1")),
            param_space={"learning_rate": tune.loguniform(1e-4, 1e-2)},
        )

    Each result is a row of ``metrics.csv`` (``episode_return_mean``, ``timesteps_total``,
    ``learner/...``); a trial ends at the run's stop reward or timesteps (``done``)."""
    trial_class = type(f"{config.algorithm}_trainable", (_TrainerTrainable,), {"base": config})
    return tune.with_resources(
        trial_class, lambda values: trial_resources(trial_config(config, values))
    )
