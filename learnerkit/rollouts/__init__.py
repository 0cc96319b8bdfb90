"""Sampling and the maths on sampled trajectories: env runners, rollouts, GAE.

``EnvRunner`` steps a gymnasium vector env with a numpy policy into a ``Rollout`` of
time-major arrays; ``compute_gae`` and ``RunningMeanStd`` are pure numpy. Nothing here
imports a framework or Ray (the Ray env-runner actors live in ``learnerkit.distributed``).
"""

from learnerkit.rollouts.gymnasium_sampling import EnvRunner
from learnerkit.rollouts.postprocessing import RunningMeanStd, compute_gae, explained_variance
from learnerkit.rollouts.rollout import Rollout

__all__ = ["EnvRunner", "Rollout", "RunningMeanStd", "compute_gae", "explained_variance"]
