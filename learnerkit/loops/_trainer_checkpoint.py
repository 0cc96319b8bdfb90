"""The parts of a run's checkpoint besides the learners' state that the trainer writes and
reads: the training loop's state (JSON in ``trainer_state.json``, or a file of its own when
it holds arrays) and the env runners' generators and envs (an exact resume: docs/faults.md)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from learnerkit import _checkpoint
from learnerkit.loops._run_files import LOOP_STATE_FILE, RUNNERS_STATE_FILE, checkpoint_dir

# The trainer's logger, as before these moved here: whoever filters its warnings still does.
logger = logging.getLogger("learnerkit.loops._trainer")


def save_loop_state(state: Any, path: Path) -> dict[str, Any]:
    """The loop's ``state`` for ``trainer_state.json``: itself when it is JSON, else a note
    of the file that holds it with its arrays (a replay buffer, say)."""
    if not _checkpoint.holds_arrays(state):
        (path / LOOP_STATE_FILE).unlink(missing_ok=True)  # an earlier save's arrays
        return {"loop": state}
    _checkpoint.save(path, {"loop": state}, file=LOOP_STATE_FILE)
    return {"loop_file": LOOP_STATE_FILE}


def load_loop_state(path: Path, state: dict[str, Any]) -> Any:
    """The loop's state that ``save_loop_state`` noted in ``state`` (the trainer state)."""
    if state.get("loop_file"):
        return _checkpoint.load(checkpoint_dir(path), file=state["loop_file"])["loop"]
    return state.get("loop", {})


def save_runner_states(runners: Any, path: Path) -> dict[str, Any]:
    """The env runners' generators and envs, beside the loop's state, and the note of
    them for ``trainer_state.json`` (nothing for runners that keep none)."""
    get_states = getattr(runners, "get_runner_states", None)
    if get_states is None:
        return {}
    _checkpoint.save(path, {"runners": get_states()}, file=RUNNERS_STATE_FILE)
    return {"env_runners_file": RUNNERS_STATE_FILE}


def restore_runner_states(runners: Any, path: Path, state: dict[str, Any]) -> None:
    set_states = getattr(runners, "set_runner_states", None)
    if set_states is None:
        return
    if not state.get("env_runners_file"):
        logger.warning(
            "the checkpoint holds no env runner state (saved by an older learnerkit): "
            "the env runners start new episodes from their seeds"
        )
        return
    saved = _checkpoint.load(checkpoint_dir(path), file=state["env_runners_file"])
    notes = set_states(list(saved["runners"]))
    for index, note in enumerate(notes):
        if note is not None:
            logger.warning(
                "env runner %d does not continue exactly as the saved run would: %s",
                index,
                note,
            )
