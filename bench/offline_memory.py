"""Peak memory of the offline loop as the dataset grows: flat, because episodes are streamed.

Records two Minari datasets, of N and of 10N episodes, with a hand-written controller in a
wide environment (``WideObs``: 1024 random observation features per step, 200 steps per
episode, so 10N episodes hold far more bytes than the framework's own footprint), then
trains BC for one epoch on each in a fresh subprocess, with ``dataset_chunk_episodes``
fixed, and prints each run's peak resident memory (``ru_maxrss``) and their ratio: about
1.0 means memory does not grow with the dataset. ``--control`` adds the same two runs with
one chunk holding the whole dataset (no streaming), whose peak does grow. Evaluation
episodes are off: only reading and training are measured. Nothing is downloaded: the
datasets go to a temporary Minari store.

    python bench/offline_memory.py              # N = 25 episodes (5,000 and 50,000 rows)
    python bench/offline_memory.py --control    # and the unstreamed runs for comparison
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import gymnasium as gym
import numpy as np

ENV_ID = "learnerkit-bench/WideObs-v0"


class WideObs(gym.Env):
    """Observations of ``obs_dim`` standard-normal features; the action to clone is the
    sign of the first one. Reward 1 for a right action; episodes last ``length`` steps."""

    def __init__(self, obs_dim: int = 1024, length: int = 200) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.length = length

    def _obs(self) -> np.ndarray:
        return self.np_random.standard_normal(self.observation_space.shape).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.obs = 0, self._obs()
        return self.obs, {}

    def step(self, action):
        reward = float(int(action) == int(self.obs[0] > 0))
        self.t, self.obs = self.t + 1, self._obs()
        return self.obs, reward, False, self.t >= self.length, {}


# The entry point names this script's module: the child processes run it as __main__ too.
gym.register(ENV_ID, entry_point=f"{__name__}:WideObs")


def child(dataset_id: str, chunk_episodes: int) -> None:
    """Train BC for one epoch on ``dataset_id`` and print the peak memory, as JSON."""
    from learnerkit.loops._trainer import TrainConfig, train

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        summary = train(
            TrainConfig(
                algorithm="bc",
                dataset=dataset_id,
                out_dir=out,
                progress=False,
                overrides={
                    "num_epochs": 1,
                    "train_batch_size": 256,
                    "dataset_chunk_episodes": chunk_episodes,
                    "evaluation_num_episodes": 0,
                    "evaluation_interval": 100,
                },
            )
        )
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "rows": summary.timesteps_total,
                "peak_rss_mb": peak_kb / 1024,
                "seconds": time.perf_counter() - start,
            }
        )
    )


def run_child(dataset_id: str, chunk_episodes: int, store: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", dataset_id, "--chunk-episodes", str(chunk_episodes)],
        capture_output=True,
        text=True,
        env={**os.environ, "MINARI_DATASETS_PATH": store},
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=25, help="N: the small dataset")
    parser.add_argument("--factor", type=int, default=10, help="the large one holds N * this")
    parser.add_argument("--chunk-episodes", type=int, default=10)
    parser.add_argument("--control", action="store_true", help="also train without streaming")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.chunk_episodes)
        return

    from learnerkit.rollouts import datasets

    with tempfile.TemporaryDirectory() as store:
        os.environ["MINARI_DATASETS_PATH"] = store
        sizes = {"small": args.episodes, "large": args.episodes * args.factor}
        for name, episodes in sizes.items():
            t0 = time.perf_counter()
            dataset = datasets.record_dataset(
                ENV_ID,
                lambda obs: int(obs[0] > 0),
                num_episodes=episodes,
                dataset_id=f"bench/{name}-v0",
                algorithm_name="sign of the first feature",
                author="learnerkit bench",
                author_email="-",
                code_permalink="bench/offline_memory.py",
                description="offline memory benchmark",
            )
            megabytes = dataset.total_steps * 4 * dataset.observation_space.shape[0] / 2**20
            print(
                f"recorded bench/{name}-v0: {episodes} episodes, {dataset.total_steps} rows, "
                f"{megabytes:.0f} MB of observations in {time.perf_counter() - t0:.1f} s"
            )
        runs = [("streamed", args.chunk_episodes)]
        if args.control:
            runs.append(("one chunk", sizes["large"]))
        for label, chunk in runs:
            peaks = {}
            for name in sizes:
                result = run_child(f"bench/{name}-v0", chunk, store)
                peaks[name] = result["peak_rss_mb"]
                print(
                    f"{label:>9} (dataset_chunk_episodes={chunk}): bench/{name}-v0, "
                    f"{result['rows']} rows trained, peak RSS {result['peak_rss_mb']:.0f} MB, "
                    f"{result['seconds']:.1f} s"
                )
            print(
                f"{label:>9}: peak RSS at {args.factor}x the episodes / at 1x = "
                f"{peaks['large'] / peaks['small']:.2f}"
            )


if __name__ == "__main__":
    main()
