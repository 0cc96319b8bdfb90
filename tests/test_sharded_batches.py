"""ShardedBatch: each data-parallel learner reads its own shard where it runs.

A local group reads every shard; Ray learners each read theirs, compare their layouts before
training, and refuse the update together (nothing applied, no collective left waiting) when
a read fails or the shards differ.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS

from learnerkit import (
    BatchError,
    LearnerGroup,
    LearnerSpec,
    ModuleSpec,
    MultiAgentBatch,
    SampleBatch,
    ScalingConfig,
    ShardedBatch,
)


class SeededShards(ShardedBatch):
    """Shard i is ``rows[i]`` random CartPole rows seeded with i; shard ``fail`` raises when
    read. (Self-contained: Ray ships this test module's code to the learners by value.)"""

    def __init__(self, rows: list[int], fail: int | None = None, log_dir=None) -> None:
        self.rows, self.fail, self.log_dir = rows, fail, log_dir
        self.num_shards = len(rows)

    def read(self, shard: int) -> SampleBatch:
        if self.log_dir is not None:  # who read what: a file named pid-shard
            (self.log_dir / f"{os.getpid()}-{shard}").touch()
        if shard == self.fail:
            raise OSError(f"shard {shard}: the disk is gone")
        rng = np.random.default_rng(shard)
        n = self.rows[shard]
        return SampleBatch(
            {
                "obs": rng.normal(size=(n, 4)).astype(np.float32),
                "actions": rng.integers(0, 2, size=n),
            }
        )


def spec(num_learners: int) -> LearnerSpec:
    return LearnerSpec(
        algorithm="bc",
        module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
        scaling=ScalingConfig(num_learners=num_learners, num_cpus_per_learner=0.5),
    )


def test_read_all_concatenates_every_shard_per_module():
    batch = SeededShards([3, 5]).read_all()
    assert isinstance(batch, MultiAgentBatch) and batch.count == 8
    second = SeededShards([3, 5]).read(1)["obs"]
    np.testing.assert_array_equal(batch["default_policy"]["obs"][3:], second)


def test_a_local_group_trains_on_every_shard_as_one_batch():
    shards = SeededShards([40, 24])
    with LearnerGroup(spec(0)) as sharded, LearnerGroup(spec(0)) as plain:
        got = sharded.update(shards, minibatch_size=16)
        want = plain.update(shards.read_all(), minibatch_size=16)
        assert got["default_policy"]["num_samples"] == 64
        for name, value in plain.get_weights()["default_policy"].items():
            np.testing.assert_array_equal(sharded.get_weights()["default_policy"][name], value)
        assert got["default_policy"]["total_loss"] == want["default_policy"]["total_loss"]


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_ray_learners_read_their_own_shards_and_refuse_bad_ones_together(tmp_path):
    with LearnerGroup(spec(2)) as group:
        with pytest.raises(ValueError, match="one shard per learner"):
            group.update(SeededShards([8, 8, 8]))
        before = group.get_state()

        # A failed read: that learner's error, promptly, with nothing applied anywhere.
        with pytest.raises(OSError, match="shard 1: the disk is gone"):
            group.update(SeededShards([32, 32], fail=1), minibatch_size=16)
        # Shards of different sizes would run different numbers of minibatches.
        with pytest.raises(BatchError, match="different modules or numbers of rows"):
            group.update(SeededShards([32, 48]), minibatch_size=16)
        after = group.get_state()
        for name, value in before["modules"]["default_policy"].items():
            np.testing.assert_array_equal(after["modules"]["default_policy"][name], value)

        # Each learner trained on the shard it read: its own rows, not a share of both.
        results = group.update(SeededShards([32, 32], log_dir=tmp_path), minibatch_size=16)
        assert results["default_policy"]["num_samples"] == 64
        reads = sorted(path.name.split("-") for path in tmp_path.iterdir())
        assert sorted(shard for _, shard in reads) == ["0", "1"]
        assert len({pid for pid, _ in reads} | {str(os.getpid())}) == 3  # two learners
        weights = group.foreach_learner(lambda learner: learner.get_module_state())
        for name, value in weights[0]["default_policy"].items():
            np.testing.assert_array_equal(weights[1]["default_policy"][name], value)
