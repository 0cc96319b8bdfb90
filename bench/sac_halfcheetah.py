"""SAC on HalfCheetah-v5 (MuJoCo): the return reached after 100,000 and 300,000 env steps,
learnerkit beside Stable-Baselines3's SAC on the same budget (not run in CI: hours of CPU).

learnerkit SAC with its defaults and HalfCheetah-v5 preset (256-256 ReLU networks, Adam at
3e-4, batches of 256, one gradient step per env step after 10,000 rows, tau 0.005) against
SB3's SAC with rl-baselines3-zoo's HalfCheetah settings (``hyperparams/sac.yml``:
learning_starts 10000, SB3's defaults else, which are the same as learnerkit's). Each
contender is a fresh subprocess on one torch thread; the returns are the last-100-episode
training means when the step counts are passed (episodes are 1,000 steps: the last 100
cover 100k steps, so the 100k figure is a mean over the whole run so far) and a final
deterministic evaluation (10 episodes of the mean action) at the end.

    pip install -c constraints.txt -e ".[mujoco,bench]"
    python bench/sac_halfcheetah.py [--seeds 0] [--checkpoints 100000 300000]
    # the two contenders at once, one core each:
    python bench/sac_halfcheetah.py --checkpoints 100000 --only learnerkit &
    python bench/sac_halfcheetah.py --checkpoints 100000 --only sb3

Measured, 300k budget, seed 0, the two contenders at once (`--only learnerkit` and `--only
sb3`, nice 19) on a 2-core machine that was running test suites beside them, so wall times
are loose: learnerkit's last-100 training mean 1,883 at 100,352 steps (96 episodes; the
same figure as an earlier 100k-only run: the run is seeded) and 6,682 at 300,032 steps;
SB3's 2,262 at 100,000 (2,167 over its first 96 episodes) and 6,908 at 300,000 (0.97x);
mean-action evaluation after 300k: 7,681 vs 8,018 (0.96x); wall 4,690 vs 5,534 s (0.85x);
peak memory 384 vs 463 MiB (0.83x). One seed: within seed noise of each other, not ranked.
"""

from __future__ import annotations

import argparse
import sys

from dqn_cartpole import run_child

LEARNERKIT = """
import csv, json
from learnerkit.loops import TrainConfig, evaluate_checkpoint, train
s = train(TrainConfig(algorithm="sac", env_id="HalfCheetah-v5", seed={seed},
                      stop_timesteps={budget}, out_dir={out!r}, progress=False,
                      overrides={{"learning_starts": {learning_starts}}}))
with open({out!r} + "/metrics.csv", newline="") as f:
    rows = list(csv.DictReader(f))
at = {{}}
for mark in {marks}:
    reached = [r for r in rows if int(r["timesteps_total"]) >= mark and r["episode_return_mean"]]
    at[mark] = float(reached[0]["episode_return_mean"]) if reached else None
evaluation, _ = evaluate_checkpoint({out!r}, num_episodes=10)
print("RESULT", json.dumps({{"at": at, "eval": evaluation, "steps": s.timesteps_total,
    "reached": True}}))
"""

SB3 = """
import json, os, torch
torch.set_num_threads(1)
import gymnasium as gym
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy

at = {{}}
os.makedirs({out!r}, exist_ok=True)
progress = open({out!r} + "/progress.csv", "w", buffering=1)
progress.write("timesteps_total,episode_return_mean\\n")

class Marks(BaseCallback):
    def _on_step(self):
        buf = self.model.ep_info_buffer
        if self.model.num_timesteps % 1000 == 0 and buf:
            mean = sum(e["r"] for e in buf) / len(buf)
            progress.write(f"{{self.model.num_timesteps}},{{mean}}\\n")
        for mark in {marks}:
            if mark not in at and self.model.num_timesteps >= mark and buf:
                at[mark] = sum(e["r"] for e in buf) / len(buf)
        return True

# rl-baselines3-zoo hyperparams/sac.yml, HalfCheetah: learning_starts 10000.
model = SAC("MlpPolicy", gym.make("HalfCheetah-v5"), learning_starts={learning_starts}, seed={seed},
            verbose=0)
model.learn(total_timesteps={budget}, callback=Marks())
evaluation, _ = evaluate_policy(model, gym.make("HalfCheetah-v5"), n_eval_episodes=10,
                                deterministic=True)
print("RESULT", json.dumps({{"at": at, "eval": float(evaluation),
    "steps": model.num_timesteps, "reached": True}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--skip-sb3", action="store_true", help="same as --only learnerkit")
    parser.add_argument(
        "--only",
        choices=["learnerkit", "sb3"],
        help="run one contender (run the script twice at once to use two cores)",
    )
    parser.add_argument(
        "--learning-starts",
        type=int,
        default=10_000,
        help="rows before the first gradient step, both contenders (lower only for a smoke run)",
    )
    args = parser.parse_args()
    budget = max(args.checkpoints)
    contenders = {"learnerkit": LEARNERKIT, "sb3": SB3}
    only = "learnerkit" if args.skip_sb3 else args.only
    if only:
        contenders = {only: contenders[only]}
    for seed in args.seeds:
        for name, template in contenders.items():
            code = template.format(
                seed=seed,
                budget=budget,
                marks=args.checkpoints,
                learning_starts=args.learning_starts,
                out=f"/tmp/lk-sac-cheetah-{name}-{seed}",
            )
            r = run_child(code, sys.executable)
            if "error" in r:
                print(f"{name:<10} seed {seed}: failed: {r['error']}", flush=True)
                continue
            marks = ", ".join(
                f"{int(k) // 1000}k: {v:.0f}" if v is not None else f"{int(k) // 1000}k: -"
                for k, v in r["at"].items()
            )
            print(
                f"{name:<10} seed {seed}: last-100 mean at {marks}; deterministic evaluation "
                f"{r['eval']:.0f}; {r['wall']:.0f} s wall, peak {r['peak_mib']:.0f} MiB",
                flush=True,
            )


if __name__ == "__main__":
    main()
