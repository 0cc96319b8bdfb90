"""The built-in plugins meet the plugin contract, checked with the kit third parties use
(``learnerkit.testing.AlgorithmContract``). To keep the suite fast (each TensorFlow learner
traces its step), TensorFlow runs for PPO, APPO (V-trace, a target network, two optimizers)
and DQN (its own module); IMPALA's TensorFlow loss is APPO's V-trace path and BC's a
log-likelihood, both covered by their learning tests. The optional checks run once: PPO's
two-Ray-learner group and its two-state task, on torch."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from learnerkit.testing import AlgorithmContract

FRAGMENTS = {"rollout_fragment_length": 16, "train_batch_size": 32, "minibatch_size": 32}
PPO_TINY_TASK = {"num_envs_per_env_runner": 8, "rollout_fragment_length": 32}
DQN = {"learning_starts": 0}
SAC = {"learning_starts": 0}


class TestPPOContract(AlgorithmContract):
    algorithm = "ppo"
    ray_learner_group = ("torch",)
    learns_tiny_task = ("torch",)
    tiny_task_hyperparameters = PPO_TINY_TASK


class TestIMPALAContract(AlgorithmContract):
    algorithm = "impala"
    frameworks = ("torch",)
    hyperparameters = FRAGMENTS


class TestAPPOContract(AlgorithmContract):
    algorithm = "appo"
    hyperparameters = FRAGMENTS


class TestBCContract(AlgorithmContract):
    algorithm = "bc"
    frameworks = ("torch",)
    # Behaviour cloning trains the policy only: the default module's value tower keeps its
    # initial weights.
    allow_no_gradient = ("vf.*",)


class TestDQNContract(AlgorithmContract):
    algorithm = "dqn"
    hyperparameters = DQN


class TestSACContract(AlgorithmContract):
    algorithm = "sac"
    frameworks = ("torch",)  # TensorFlow: test_sac.py's per-optimizer losses and learning run
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    hyperparameters = SAC
