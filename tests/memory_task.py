"""The settings with which the recurrent tests train on the memory tasks
(``learnerkit/RepeatAfterMe-v0`` and its two-agent PettingZoo version): one small LSTM and
the sampling and PPO/IMPALA/APPO settings that learn them in seconds, written once."""

from __future__ import annotations

MEMORY = "learnerkit/RepeatAfterMe-v0"
SMALL_LSTM = {"use_lstm": True, "lstm_cell_size": 32, "max_seq_len": 20, "hiddens": [32]}
MEMORY_SETTINGS = {"num_envs_per_env_runner": 8, "rollout_fragment_length": 40, "gamma": 0.5}
ALGORITHM_SETTINGS = {
    "ppo": {"minibatch_size": 80, "num_epochs": 4, "learning_rate": 3e-3, "lambda_": 0.9},
    "impala": {"train_batch_size": 320, "minibatch_size": 160},
    "appo": {"train_batch_size": 320, "minibatch_size": 160},
}
PPO_MEMORY_SETTINGS = {**MEMORY_SETTINGS, **ALGORITHM_SETTINGS["ppo"]}
