"""Replay buffer throughput and memory against a naive buffer, measured in the same run.

Two row kinds:

- ``cartpole``: float32 observations of 4, int64 actions, ``--capacity`` rows (1M);
- ``atari``: uint8 observations of 84x84x4 (a frame stack), int64 actions, in a buffer of
  ``--atari-capacity`` (100k by default: 1M of these is 26 GiB per copy of the observations,
  more than the 23 GB development machine can allocate; bytes per transition do not depend
  on the capacity). Only ``--atari-rows`` rows are written: arrays are allocated for the
  whole capacity, and pages never written take no memory.

The naive buffer is what a first DQN replay buffer looks like: ``obs`` and ``new_obs`` in
arrays of their own, one-step, no pending windows, ring writes and fancy-index reads. The
learnerkit buffers store each observation once, compute ``--n-step`` returns as rows come
in and keep windows pending across fragments, so the naive one is a floor on the work.

Rows come as env-runner fragments (``--fragment T N``: T steps of N envs, time-major) with
episode ends (terminated and truncated) about every 200 steps. Printed per kind: rows added
per second (after the buffer is full, so eviction is included), rows sampled per second in
batches of ``--batch-size`` (uniform, and prioritized with a priority update per batch),
and bytes per transition (``nbytes / capacity`` against the naive buffer's arrays).

    python bench/replay_buffer_speed.py                 # 1M CartPole rows, 20k Atari rows
    python bench/replay_buffer_speed.py --capacity 100000 --atari-rows 5000   # quicker
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from learnerkit.replay import PrioritizedReplayBuffer, ReplayColumns, UniformReplayBuffer

KINDS = {"cartpole": ((4,), np.float32), "atari": ((84, 84, 4), np.uint8)}


class NaiveBuffer:
    """obs and new_obs stored apart, one-step targets, a ring: the floor to compare with."""

    def __init__(self, capacity: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.capacity, self.added = capacity, 0
        self.obs = np.zeros((capacity, *shape), dtype)
        self.new_obs = np.zeros((capacity, *shape), dtype)
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminateds = np.zeros(capacity, bool)

    @property
    def nbytes(self) -> int:
        arrays = (self.obs, self.new_obs, self.actions, self.rewards, self.terminateds)
        return sum(a.nbytes for a in arrays)

    def add(self, fragment: dict[str, np.ndarray]) -> None:
        count = fragment["rewards"].size
        slots = np.arange(self.added, self.added + count) % self.capacity
        for name in ("obs", "new_obs", "actions", "rewards", "terminateds"):
            array = fragment[name]
            getattr(self, name)[slots] = array.reshape(count, *array.shape[2:])
        self.added += count

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        slots = rng.integers(min(self.added, self.capacity), size=batch_size)
        return {
            name: getattr(self, name)[slots]
            for name in ("obs", "new_obs", "actions", "rewards", "terminateds")
        }


def fragments(kind: str, steps: int, envs: int, count: int, seed: int = 0):
    """``count`` distinct fragments to cycle through (making rows costs no buffer time)."""
    shape, dtype = KINDS[kind]
    rng = np.random.default_rng(seed)
    made = []
    for _ in range(count):
        obs = rng.integers(0, 255, size=(steps + 1, envs, *shape)).astype(dtype)
        ends = rng.random((steps, envs)) < 1 / 200
        made.append(
            {
                "obs": obs[:-1],
                "new_obs": obs[1:],
                "actions": rng.integers(0, 4, size=(steps, envs)),
                "rewards": rng.normal(size=(steps, envs)).astype(np.float32),
                "terminateds": ends & (rng.random((steps, envs)) < 0.5),
                "truncateds": ends,
            }
        )
    return made


def time_adds(add, made: list[dict], rows: int) -> float:
    per_add = made[0]["rewards"].size
    start = time.perf_counter()
    for i in range(max(1, rows // per_add)):
        add(made[i % len(made)])
    return max(1, rows // per_add) * per_add / (time.perf_counter() - start)


def time_samples(sample, batch_size: int, batches: int) -> float:
    start = time.perf_counter()
    for _ in range(batches):
        sample()
    return batches * batch_size / (time.perf_counter() - start)


def run(kind: str, args: argparse.Namespace) -> None:
    shape, dtype = KINDS[kind]
    steps, envs = args.fragment
    capacity = args.capacity if kind == "cartpole" else args.atari_capacity
    rows = capacity if kind == "cartpole" else min(args.atari_rows, capacity)
    made = fragments(kind, steps, envs, count=8 if kind == "atari" else 64)
    streams = list(range(envs))
    uniform = UniformReplayBuffer(capacity, n_step=args.n_step, gamma=0.99)
    prioritized = PrioritizedReplayBuffer(capacity, n_step=args.n_step, gamma=0.99)
    naive = NaiveBuffer(capacity, shape, dtype)
    batch_size = args.batch_size if kind == "cartpole" else 32
    print(
        f"\n{kind}: obs {shape} {np.dtype(dtype).name}, capacity {capacity:,}, "
        f"{rows:,} rows added in fragments of {steps}x{envs}, n_step {args.n_step}"
    )
    # Fill (cartpole: to capacity, so the timed adds evict), then time adds.
    adds = {
        "naive": naive.add,
        "uniform": lambda f: uniform.add_time_major(f, streams=streams),
        "prioritized": lambda f: prioritized.add_time_major(f, streams=streams),
    }
    added = {name: time_adds(add, made, rows) for name, add in adds.items()}
    added = {name: time_adds(add, made, rows // 2) for name, add in adds.items()}
    rng = np.random.default_rng(0)

    def prioritized_step():
        batch = prioritized.sample(batch_size, rng, beta=0.4)
        prioritized.update_priorities(
            batch[ReplayColumns.BATCH_INDEXES], rng.random(batch_size).astype(np.float32)
        )

    samples = {
        "naive": lambda: naive.sample(batch_size, rng),
        "uniform": lambda: uniform.sample(batch_size, rng),
        "prioritized": prioritized_step,
    }
    sampled = {name: time_samples(s, batch_size, args.batches) for name, s in samples.items()}
    sizes = {"naive": naive.nbytes, "uniform": uniform.nbytes, "prioritized": prioritized.nbytes}
    print(f"{'':12} {'add rows/s':>12} {'sample rows/s':>14} {'bytes/transition':>17}")
    for name in adds:
        print(
            f"{name:12} {added[name]:12,.0f} {sampled[name]:14,.0f} {sizes[name] / capacity:17,.1f}"
        )
    for name in ("uniform", "prioritized"):
        print(
            f"{name} / naive: add {added[name] / added['naive']:.2f}x, sample "
            f"{sampled[name] / sampled['naive']:.2f}x, memory {sizes[name] / sizes['naive']:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--atari-capacity", type=int, default=100_000)
    parser.add_argument("--atari-rows", type=int, default=20_000)
    parser.add_argument("--fragment", type=int, nargs=2, default=[16, 8], metavar=("T", "N"))
    parser.add_argument("--n-step", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=500)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    args = parser.parse_args()
    for kind in args.kinds:
        run(kind, args)


if __name__ == "__main__":
    main()
