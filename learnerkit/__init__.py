"""learnerkit: write reinforcement-learning algorithms as plugins; train them locally or on Ray.

Everything public is importable from here. Importing learnerkit loads no torch, TensorFlow
or Ray: frameworks are imported when a Learner is built.
"""

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
from learnerkit.batch import DEFAULT_MODULE_ID, Columns, MultiAgentBatch, SampleBatch
from learnerkit.errors import (
    BatchError,
    CheckpointError,
    ConfigError,
    DatasetError,
    EnvRunnerError,
    LearnerGroupError,
    LearnerkitError,
    NonFiniteError,
    PluginError,
    UnknownAlgorithmError,
)
from learnerkit.hookspecs import hookimpl
from learnerkit.learner import Learner
from learnerkit.learner_group import LearnerGroup
from learnerkit.loops.settings import (
    AsyncSettings,
    OfflineSettings,
    OnPolicySettings,
    SamplingSettings,
)
from learnerkit.ops import Ops
from learnerkit.specs import (
    Hyperparameters,
    LearnerSpec,
    ModuleSpec,
    ScalingConfig,
    schedule_value,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODULE_ID",
    "ENTRY_POINT_GROUP",
    "Algorithm",
    "AsyncSettings",
    "BatchError",
    "CheckpointError",
    "Columns",
    "ConfigError",
    "DatasetError",
    "EnvRunnerError",
    "Hyperparameters",
    "Learner",
    "LearnerGroup",
    "LearnerGroupError",
    "LearnerSpec",
    "LearnerkitError",
    "ModuleSpec",
    "MultiAgentBatch",
    "NonFiniteError",
    "OfflineSettings",
    "OnPolicySettings",
    "Ops",
    "PluginError",
    "PluginInfo",
    "SampleBatch",
    "SamplingSettings",
    "ScalingConfig",
    "UnknownAlgorithmError",
    "__version__",
    "get_algorithm",
    "hookimpl",
    "list_plugins",
    "load_plugins",
    "register_algorithm",
    "schedule_value",
    "unregister_algorithm",
]
