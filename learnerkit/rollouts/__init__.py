"""Sampling and the maths on sampled trajectories: env runners, rollouts, GAE.

One sampling engine (``sampling``: observation normalisation per module, the policy-output
check, action clipping, bootstrap values) with two env adapters: ``gymnasium_sampling``
(``EnvRunner``: a gymnasium vector env into a ``Rollout`` of time-major arrays) and
``pettingzoo_sampling`` (PettingZoo parallel envs, a module per agent group, into a
``MultiAgentRollout``). ``sampler`` makes one env runner of an adapter and its module
copies; ``contract`` is what the training loops see of it. ``compute_gae`` and
``RunningMeanStd`` are pure numpy. A recurrent module's state rides along
(``recurrent``: ``StateCarrier``, one state per env; ``recurrent_acting``: the numpy copy
of the default LSTM module). Nothing here imports a framework or Ray (the Ray env-runner
actors live in ``learnerkit.distributed``).
"""

from learnerkit.rollouts._gymnasium_sampling import EnvRunner
from learnerkit.rollouts._postprocessing import RunningMeanStd, compute_gae, explained_variance
from learnerkit.rollouts._rollout import Rollout

__all__ = ["EnvRunner", "Rollout", "RunningMeanStd", "compute_gae", "explained_variance"]
