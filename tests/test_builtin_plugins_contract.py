"""The built-in plugins meet the plugin contract, checked with the kit third parties use
(``learnerkit.testing.AlgorithmContract``) on every framework each declares. The kit's
optional checks run where they add something the other tests do not already cover: PPO's
two-Ray-learner group and its two-state task, on torch only, keep the suite fast."""

from __future__ import annotations

from learnerkit.testing import AlgorithmContract

FRAGMENTS = {"rollout_fragment_length": 16, "train_batch_size": 32, "minibatch_size": 32}
PPO_TINY_TASK = {"num_envs_per_env_runner": 8, "rollout_fragment_length": 32}
DQN = {"learning_starts": 0}


class TestPPOContract(AlgorithmContract):
    algorithm = "ppo"
    ray_learner_group = ("torch",)
    learns_tiny_task = ("torch",)
    tiny_task_hyperparameters = PPO_TINY_TASK


class TestIMPALAContract(AlgorithmContract):
    algorithm = "impala"
    hyperparameters = FRAGMENTS


class TestAPPOContract(AlgorithmContract):
    algorithm = "appo"
    hyperparameters = FRAGMENTS


class TestBCContract(AlgorithmContract):
    algorithm = "bc"
    # Behaviour cloning trains the policy only: the default module's value tower keeps its
    # initial weights.
    allow_no_gradient = ("vf.*",)


class TestDQNContract(AlgorithmContract):
    algorithm = "dqn"
    hyperparameters = DQN
