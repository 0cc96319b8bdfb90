"""The files of a training run's checkpoint that the training loops write besides the
learners' state: ``run.json`` (what the run was trained with), ``trainer_state.json``
(counters, recent returns, observation statistics, the loop's own state), for a loop
whose state holds arrays ``loop_state.npz``, and the env runners' generators and envs,
``env_runners.npz``. Read by resume, ``learnerkit evaluate`` and
``learnerkit collect``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from learnerkit.errors import CheckpointError

RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoint"
TRAINER_STATE_FILE = "trainer_state.json"
LOOP_STATE_FILE = "loop_state.npz"
"""A loop's state, when it holds arrays (a replay buffer, say); else it is JSON in
``trainer_state.json``."""
RUNNERS_STATE_FILE = "env_runners.npz"
"""The env runners' generators and envs (``EnvRunners.get_runner_states``), for an exact
resume."""


def checkpoint_dir(path: str | os.PathLike) -> Path:
    """The checkpoint directory of a run directory, or ``path`` itself if it is one."""
    path = Path(path)
    return path / CHECKPOINT_DIR if (path / CHECKPOINT_DIR).is_dir() else path


def read_run(path: str | os.PathLike) -> dict[str, Any]:
    """What a run was trained with (``run.json`` of its checkpoint)."""
    run_file = checkpoint_dir(path) / RUN_FILE
    if not run_file.is_file():
        raise CheckpointError(
            f"{path} is not a learnerkit training checkpoint ({RUN_FILE} is missing); pass the "
            "run directory written by `learnerkit train`"
        )
    return json.loads(run_file.read_text())


def read_trainer_state(path: str | os.PathLike) -> dict[str, Any]:
    """The training loop's own state in a checkpoint (counters, recent returns, and the
    observation normaliser's statistics as numpy arrays)."""
    state_file = checkpoint_dir(path) / TRAINER_STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(
            f"{path} is not a learnerkit training checkpoint: {state_file} is missing"
        )
    state = json.loads(state_file.read_text())
    state["obs_normalizer"] = {k: np.asarray(v) for k, v in state["obs_normalizer"].items()}
    return state


def default_out_dir(algorithm: str, env_id: str, seed: int) -> str:
    return os.path.join("runs", f"{algorithm}-{env_id}-seed{seed}")
