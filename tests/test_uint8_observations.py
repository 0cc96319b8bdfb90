"""uint8 image observations stay uint8 from the env to the train batch and the replay
buffer (a quarter of float32's bytes), and only the module turns them into floats; other
observations, and normalised ones, are float32 as before (normalising pixels for a conv
encoder, which scales them itself, is refused)."""

from __future__ import annotations

import numpy as np
import pytest

from learnerkit import Columns, ConfigError
from learnerkit.loops import TrainConfig, train
from learnerkit.replay import UniformReplayBuffer
from learnerkit.rollouts import EnvRunner

ATARI_SIZED = {"size": 21, "cell": 4}  # 84x84x3 frames


def _random_policy(obs):
    n = len(obs)
    return {
        Columns.ACTIONS: np.random.default_rng(0).integers(4, size=n),
        Columns.ACTION_LOGP: np.zeros(n, np.float32),
        Columns.VF_PREDS: np.zeros(n, np.float32),
        Columns.ACTION_DIST_INPUTS: np.zeros((n, 4), np.float32),
    }


def _sample(steps, **kwargs):
    with EnvRunner("learnerkit/PixelGrid-v0", num_envs=2, seed=0, **kwargs) as runner:
        return runner.sample(_random_policy, lambda obs: np.zeros(len(obs)), steps)


def test_frames_stay_uint8_through_fragments_and_train_batches_at_a_quarter_of_the_bytes():
    rollout = _sample(40, env_kwargs=ATARI_SIZED)  # episodes end inside: final obs too
    assert rollout.obs.dtype == rollout.next_obs.dtype == np.uint8
    batch = rollout.to_sample_batch(gamma=0.99, lambda_=0.95)
    obs = batch[Columns.OBS]
    assert obs.shape == (80, 84, 84, 3) and obs.dtype == np.uint8
    assert obs.nbytes == 80 * 84 * 84 * 3 == obs.astype(np.float32).nbytes // 4


def test_the_replay_buffer_stores_and_samples_uint8_frames():
    buffer = UniformReplayBuffer(64)
    buffer.add_rollout(_sample(20))
    sampled = buffer.sample(8, np.random.default_rng(0))
    assert sampled[Columns.OBS].dtype == sampled[Columns.NEXT_OBS].dtype == np.uint8


def test_normalised_frames_are_float32():
    rollout = _sample(4, normalize_obs=True)
    assert rollout.obs.dtype == np.float32


def test_normalising_pixels_for_a_conv_encoder_is_refused_with_the_fix(tmp_path):
    # The encoder divides uint8 pixels by 255 itself: normalised frames would be shrunk.
    config = TrainConfig(
        env_id="learnerkit/PixelGrid-v0",
        out_dir=str(tmp_path),
        progress=False,
        overrides={"normalize_observations": True},
    )
    with pytest.raises(ConfigError, match="set normalize_observations=False"):
        train(config)
