"""Checkpoint files, as learners and training loops write them: numpy arrays and JSON values
in one ``.npz`` (no pickle, so loading one runs no code), written atomically.

Public so that a state of your own (a replay buffer's ``get_state()``, a loop's counters) can
be saved and read the way learnerkit saves its own, and so that a run's checkpoint can be
inspected: ``learnerkit.checkpoint.load("runs/.../checkpoint")`` returns the learner state as
nested dicts of numpy arrays and JSON values.
"""

from __future__ import annotations

from learnerkit._checkpoint import FORMAT_VERSION, STATE_FILE, load, save

__all__ = ["FORMAT_VERSION", "STATE_FILE", "load", "save"]
