"""The errors learnerkit raises: each names what is wrong, where, and the fix."""

from __future__ import annotations

__all__ = [
    "BatchError",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "EnvRunnerError",
    "IncompatiblePluginError",
    "LearnerGroupError",
    "LearnerkitDeprecationWarning",
    "LearnerkitError",
    "NonFiniteError",
    "PluginError",
    "UnknownAlgorithmError",
    "UnknownTrainingLoopError",
]


class LearnerkitError(Exception):
    """Base class of every error learnerkit raises on purpose."""


class ConfigError(LearnerkitError, ValueError):
    """A spec or hyperparameter has a value outside what it allows."""


class PluginError(LearnerkitError):
    """A plugin cannot be loaded, or breaks the plugin contract."""


class IncompatiblePluginError(PluginError):
    """A plugin declares a ``requires_api`` that this learnerkit's API does not meet."""


class UnknownAlgorithmError(ConfigError, LookupError):
    """No installed or registered plugin provides the algorithm asked for."""


class UnknownTrainingLoopError(ConfigError, LookupError):
    """No installed or registered loop has the name an algorithm trains with, or that loop
    is disabled."""


class BatchError(LearnerkitError, ValueError):
    """A batch is malformed: ragged columns, a missing column, a bad dtype or shape."""


class NonFiniteError(BatchError):
    """NaN or infinite values: in a batch's columns (float64 values beyond float32's range
    count, as they become inf when cast), or in a minibatch's loss or gradients. The
    minibatch that found them was not applied; see ``Hyperparameters.non_finite``."""


class CheckpointError(LearnerkitError):
    """A checkpoint is missing, corrupt, or belongs to another algorithm/framework/shape."""


class LearnerGroupError(LearnerkitError):
    """A learner actor crashed, or Ray cannot provide what the group needs."""


class EnvRunnerError(LearnerkitError):
    """An env runner failed for good: its environment kept raising, its actor kept dying
    past the restart limit, or Ray cannot place it."""


class DatasetError(ConfigError):
    """An offline dataset cannot be found or read, or does not fit the algorithm, its
    module or the environment it is evaluated in."""


class LearnerkitDeprecationWarning(DeprecationWarning):
    """An old name (a module, an import, a settings field) that still works for one more
    release; the message names the new one. ``learnerkit`` commands show these (Python
    hides DeprecationWarning outside ``__main__`` by default)."""
