"""learnerkit: write reinforcement-learning algorithms as plugins; train them locally or on Ray.

Everything public is importable from here. Importing learnerkit loads no torch, TensorFlow,
Ray or numpy: the Learner, LearnerGroup and batch classes are imported on first use (plugin
modules import only the light names, so listing plugins stays fast), and frameworks when a
Learner is built.
"""

import importlib
from typing import TYPE_CHECKING, Any

from learnerkit._column_specs import ColumnSpec
from learnerkit._columns import DEFAULT_MODULE_ID, Columns
from learnerkit._learner_spec import LearnerSpec
from learnerkit._plugins import (
    ENTRY_POINT_GROUP,
    Algorithm,
    PluginInfo,
    get_algorithm,
    list_plugins,
    load_plugins,
    register_algorithm,
    unregister_algorithm,
)
from learnerkit._specs import Hyperparameters, ModuleSpec, ScalingConfig
from learnerkit.api import API_VERSION
from learnerkit.coefficients import schedule_value
from learnerkit.errors import (
    BatchError,
    CheckpointError,
    ConfigError,
    DatasetError,
    EnvRunnerError,
    IncompatiblePluginError,
    LearnerGroupError,
    LearnerkitError,
    NonFiniteError,
    PluginError,
    UnknownAlgorithmError,
    UnknownTrainingLoopError,
)
from learnerkit.hookspecs import OPTIMIZER_LOSSES, PER_ROW, hookimpl
from learnerkit.ops import Ops
from learnerkit.settings import (
    AsyncSettings,
    OfflineSettings,
    OnPolicySettings,
    ReplaySettings,
    SamplingSettings,
)
from learnerkit.training_loops import (
    LOOP_ENTRY_POINT_GROUP,
    LoopInfo,
    LoopPluginInfo,
    get_training_loop,
    list_training_loops,
    register_training_loop,
    unregister_training_loop,
)

if TYPE_CHECKING:
    from learnerkit._batch import MultiAgentBatch, SampleBatch, ShardedBatch
    from learnerkit._learner import Learner
    from learnerkit._learner_group import LearnerGroup

_LAZY = {
    "Learner": "learnerkit._learner",
    "LearnerGroup": "learnerkit._learner_group",
    "MultiAgentBatch": "learnerkit._batch",
    "SampleBatch": "learnerkit._batch",
    "ShardedBatch": "learnerkit._batch",
}


def __getattr__(name: str) -> Any:
    # These pull in numpy (and the Learner machinery): only when a program uses them.
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'learnerkit' has no attribute {name!r}")


__version__ = "0.2.0"

__all__ = [
    "API_VERSION",
    "DEFAULT_MODULE_ID",
    "ENTRY_POINT_GROUP",
    "LOOP_ENTRY_POINT_GROUP",
    "Algorithm",
    "AsyncSettings",
    "BatchError",
    "CheckpointError",
    "ColumnSpec",
    "Columns",
    "ConfigError",
    "DatasetError",
    "EnvRunnerError",
    "Hyperparameters",
    "IncompatiblePluginError",
    "Learner",
    "LearnerGroup",
    "LearnerGroupError",
    "LearnerSpec",
    "LearnerkitError",
    "LoopInfo",
    "LoopPluginInfo",
    "ModuleSpec",
    "MultiAgentBatch",
    "NonFiniteError",
    "OPTIMIZER_LOSSES",
    "PER_ROW",
    "OfflineSettings",
    "OnPolicySettings",
    "ReplaySettings",
    "Ops",
    "PluginError",
    "PluginInfo",
    "SampleBatch",
    "ShardedBatch",
    "SamplingSettings",
    "ScalingConfig",
    "UnknownAlgorithmError",
    "UnknownTrainingLoopError",
    "__version__",
    "get_algorithm",
    "get_training_loop",
    "hookimpl",
    "list_plugins",
    "list_training_loops",
    "load_plugins",
    "register_algorithm",
    "register_training_loop",
    "schedule_value",
    "unregister_algorithm",
    "unregister_training_loop",
]
