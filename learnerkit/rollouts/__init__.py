"""Sampling and the maths on sampled trajectories: env runners, rollouts, GAE.

Public here: ``EnvRunner`` (a gymnasium vector env into a ``Rollout`` of time-major
arrays) and ``MultiAgentEnvRunner`` (PettingZoo parallel envs, a module per agent group,
into a ``MultiAgentRollout`` of per-agent segments; ``SequenceStreams`` cuts its fragments
into whole per-agent sequences, ``MultiAgentSequences``, for V-trace losses); PettingZoo
env strings and policy mappings (``make_parallel_env``, ``PolicyMapping``,
``policy_mapping_fn``); ``make_sampler`` (one env runner of an ``EnvRunnerSpec`` with its
module copies, a ``Sampler``: what the local and the Ray env runners wrap),
``RunnerModule`` (a runner's numpy copy of a module, refreshed from the learners'
weights), ``AtariSettings`` and ``atari_settings`` (the Atari preprocessing an env id
gets), ``compute_gae`` and ``RunningMeanStd`` (pure numpy); ``datasets`` and ``acting``
are public modules.

Internal: one sampling engine (``_sampling``: observation normalisation per module, the
policy-output check, action clipping, bootstrap values) with two env adapters,
``_gymnasium_sampling`` and ``_pettingzoo_sampling``; ``_contract`` is what the training
loops see of sampling (re-exported by ``learnerkit.loops.contract``). A recurrent module's
state rides along (``_recurrent``: ``StateCarrier``, one state per env;
``_recurrent_acting``: the numpy copy of the default LSTM module). Nothing here imports a
framework or Ray (the Ray env-runner actors live in ``learnerkit._distributed``).
"""

from learnerkit.rollouts._atari import AtariSettings, atari_settings
from learnerkit.rollouts._gymnasium_sampling import EnvRunner
from learnerkit.rollouts._module_copies import RunnerModule
from learnerkit.rollouts._multi_agent_rollout import MultiAgentRollout
from learnerkit.rollouts._multi_agent_sequences import MultiAgentSequences, SequenceStreams
from learnerkit.rollouts._pettingzoo_envs import PolicyMapping, make_parallel_env, policy_mapping_fn
from learnerkit.rollouts._pettingzoo_sampling import MultiAgentEnvRunner
from learnerkit.rollouts._postprocessing import RunningMeanStd, compute_gae, explained_variance
from learnerkit.rollouts._rollout import Rollout
from learnerkit.rollouts._sampler import Sampler, make_sampler

__all__ = [
    "AtariSettings",
    "EnvRunner",
    "MultiAgentEnvRunner",
    "MultiAgentRollout",
    "MultiAgentSequences",
    "PolicyMapping",
    "Rollout",
    "RunnerModule",
    "RunningMeanStd",
    "Sampler",
    "SequenceStreams",
    "atari_settings",
    "compute_gae",
    "explained_variance",
    "make_parallel_env",
    "make_sampler",
    "policy_mapping_fn",
]
