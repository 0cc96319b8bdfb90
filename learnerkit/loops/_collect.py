"""Recording a trained policy as a Minari dataset (``learnerkit collect``).

Any algorithm's checkpoint works: the policy is restored as ``learnerkit evaluate``
restores it (``evaluation.load_policy``). When the run normalised observations the policy
is fed normalised ones, with the statistics saved in the checkpoint, while the dataset
records the environment's own: a dataset is about the environment, not about one run's
normaliser. Box actions are recorded clipped to the action space, as the environment
received them. A recurrent policy (``use_lstm``) starts each episode from its initial
state and carries its state, previous action and previous reward from step to step, as env
runners do; the dataset records no state.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from learnerkit.loops._evaluation import TrainedPolicy, load_policy
from learnerkit.rollouts import datasets


@attrs.frozen(kw_only=True)
class CollectSummary:
    dataset_id: str
    path: str
    """The dataset's directory in the local Minari store."""
    env: str
    episodes: int
    steps: int
    episode_return_mean: float


def collect_dataset(
    path: str,
    *,
    num_episodes: int,
    dataset_id: str,
    env_id: str | None = None,
    greedy: bool = False,
    seed: int = 0,
    author: str | None = None,
    author_email: str | None = None,
    code_permalink: str | None = None,
    description: str | None = None,
) -> CollectSummary:
    """Run ``num_episodes`` episodes of the policy saved at ``path`` (a run or checkpoint
    directory) in ``env_id`` (default: the run's) and save them as the Minari dataset
    ``dataset_id`` in the local Minari store (``MINARI_DATASETS_PATH``, else
    ``~/.minari/datasets``).

    Actions are sampled from the policy's distribution, or its most likely ones with
    ``greedy``. Minari's metadata records ``algorithm_name`` (``learnerkit-ALGO``), the
    ``author``, ``author_email`` and ``code_permalink`` given (Minari warns about each one
    left out: they are what lets others trust and reproduce a shared dataset), and a
    description (default: what was recorded, from which checkpoint, how).
    """
    trained = load_policy(path, env_id=env_id, explore=not greedy)
    run = trained.run
    act = _Actor(trained)
    how = "greedy (most likely) actions" if greedy else "actions sampled from the policy"
    dataset = datasets.record_dataset(
        trained.env_id,
        act,
        num_episodes=num_episodes,
        dataset_id=dataset_id,
        seed=seed,
        atari=trained.atari,
        algorithm_name=f"learnerkit-{run['algorithm']}",
        author=author,
        author_email=author_email,
        code_permalink=code_permalink,
        description=description
        or (
            f"{num_episodes} episodes of {run['algorithm']} ({run['framework']}, trained by "
            f"learnerkit) in {trained.env_id}, {how}, from checkpoint {path}"
        ),
    )
    returns = datasets.episode_returns(dataset)
    return CollectSummary(
        dataset_id=dataset_id,
        path=str(datasets.local_store() / dataset_id),
        env=trained.env_id,
        episodes=int(dataset.total_episodes),
        steps=int(dataset.total_steps),
        episode_return_mean=float(np.mean(returns)),
    )


class _Actor:
    """One env's actions from ``trained``, clipped to a Box action space; a recurrent policy's
    state is reset before each episode and given each step's reward
    (``datasets.record_dataset`` calls ``reset`` and ``reward``)."""

    def __init__(self, trained: TrainedPolicy) -> None:
        self._trained = trained
        self._policy = trained.policy
        space = trained.action_space
        self._low, self._high = getattr(space, "low", None), getattr(space, "high", None)

    def __call__(self, obs: np.ndarray) -> Any:
        action = self._trained.act(np.asarray(obs)[None])[0]
        if self._low is not None:
            clipped = np.clip(action, self._low, self._high)
            return clipped.astype(self._trained.action_space.dtype)
        return int(action)

    def reset(self) -> None:
        if hasattr(self._policy, "reset"):
            self._policy.reset()

    def reward(self, reward: float) -> None:
        if hasattr(self._policy, "reward"):
            self._policy.reward(np.array([reward], np.float32))
