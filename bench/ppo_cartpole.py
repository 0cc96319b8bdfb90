"""PPO on CartPole-v1: wall time and env steps to a last-100-episode mean return of 475.

learnerkit PPO (its defaults) against Stable-Baselines3 PPO (rl-baselines3-zoo's tuned
CartPole-v1 settings) and, where it is installed, RLlib PPO (new API stack), in the same
run on the same machine. Each contender runs in a fresh subprocess, so wall time includes
interpreter and library start-up; peak memory is the child's max RSS (for RLlib, only the
driver process: its Ray workers are separate processes). For learnerkit each run also says
where its time went: start-up and exit (interpreter, imports, building; the curve and the
summary at the end), sampling, learning (``Learner.update``), and the rest of the loop.

    python bench/ppo_cartpole.py [--seeds 0 1 2 ...] [--budget 150000] [--skip-rllib]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

TARGET = 475.0

LEARNERKIT = """
import csv, json, sys
from learnerkit.loops import TrainConfig, train
s = train(TrainConfig(seed={seed}, stop_reward={target}, stop_timesteps={budget},
                      out_dir={out!r}, progress=False))
with open({out!r} + "/metrics.csv", newline="") as f:
    rows = list(csv.DictReader(f))
print("RESULT", json.dumps({{"steps": s.timesteps_total, "reached": s.reached_stop_reward,
                             "return": s.episode_return_mean, "loop_s": s.wall_seconds,
                             "sample_s": sum(float(r["sample_time_s"]) for r in rows),
                             "learn_s": sum(float(r["learn_time_s"]) for r in rows)}}))
"""

SB3 = """
import json, torch
torch.set_num_threads(1)
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

def linear(v):
    return lambda progress: progress * v

class Stop(BaseCallback):
    def _on_step(self):
        buf = self.model.ep_info_buffer
        return not (len(buf) == 100 and sum(e["r"] for e in buf) / 100 >= {target})

env = make_vec_env("CartPole-v1", n_envs=8, seed={seed})
# rl-baselines3-zoo hyperparams/ppo.yml, CartPole-v1
model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
            n_epochs=20, ent_coef=0.0, learning_rate=linear(1e-3), clip_range=linear(0.2),
            seed={seed}, verbose=0)
model.learn(total_timesteps={budget}, callback=Stop())
buf = model.ep_info_buffer
mean = sum(e["r"] for e in buf) / max(len(buf), 1)
reached = len(buf) == 100 and mean >= {target}
print("RESULT", json.dumps({{"steps": model.num_timesteps, "reached": reached, "return": mean}}))
"""

RLLIB = """
import json, logging, os
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
import ray
from ray.rllib.algorithms.ppo import PPOConfig
ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
config = (PPOConfig().environment("CartPole-v1").framework("torch")
          .env_runners(num_env_runners=0, num_envs_per_env_runner=8)
          .training(lr=3e-4, num_epochs=6, vf_loss_coeff=0.01)
          .debugging(seed={seed}))
algo = config.build_algo()
steps, ret = 0, None
while steps < {budget}:
    r = algo.train()
    steps = r["num_env_steps_sampled_lifetime"]
    ret = r["env_runners"].get("episode_return_mean")
    if ret is not None and ret >= {target}:
        break
reached = bool(ret is not None and ret >= {target})
print("RESULT", json.dumps({{"steps": int(steps), "reached": reached, "return": float(ret or 0)}}))
"""


def run_child(code: str, python: str = sys.executable) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [python, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    # wait4 gives this child's own peak RSS (getrusage(CHILDREN) would be a max over all).
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if os.waitstatus_to_exitcode(status) != 0 or not lines:
        return {"error": (err or out).strip().splitlines()[-1:] or ["no output"], "wall": wall}
    result = json.loads(lines[-1][len("RESULT ") :])
    return {**result, "wall": wall, "peak_mb": usage.ru_maxrss / 1024}


def rllib_available(python: str) -> str | None:
    probe = subprocess.run([python, "-c", "import ray.rllib"], capture_output=True, text=True)
    if probe.returncode == 0:
        return None
    last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
    return f"RLlib not measured: `import ray.rllib` fails here ({last})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Ten seeds: the median of three moved by 10% between seed sets.
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--budget", type=int, default=150_000, help="env steps per run")
    parser.add_argument("--skip-rllib", action="store_true")
    parser.add_argument("--rllib-seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--rllib-python",
        default=sys.executable,
        help="interpreter with ray[rllib] installed (RLlib pins an older gymnasium, so it may "
        "live in its own venv)",
    )
    args = parser.parse_args()

    contenders = {"learnerkit": LEARNERKIT, "sb3": SB3}
    notes = []
    if not args.skip_rllib:
        reason = rllib_available(args.rllib_python)
        if reason is None:
            contenders["rllib"] = RLLIB
        else:
            notes.append(reason)
    rows = []
    # Seeds outer, contenders inner: a load that comes and goes on the machine hits both.
    runs = [
        (name, seed)
        for seed in sorted(set(args.seeds) | set(args.rllib_seeds))
        for name in contenders
        if seed in (args.rllib_seeds if name == "rllib" else args.seeds)
    ]
    for name, seed in runs:
        template = contenders[name]
        code = template.format(
            seed=seed, target=TARGET, budget=args.budget, out=f"/tmp/lk-bench-ppo-{seed}"
        )
        result = run_child(code, args.rllib_python if name == "rllib" else sys.executable)
        rows.append((name, seed, result))
        if "error" in result:
            print(f"{name:<10} seed {seed}: failed: {result['error']}", flush=True)
        else:
            split = ""
            if "loop_s" in result:  # where learnerkit's time went
                rest = result["loop_s"] - result["sample_s"] - result["learn_s"]
                split = (
                    f" (start-up and exit {result['wall'] - result['loop_s']:.1f} s, sampling "
                    f"{result['sample_s']:.1f} s, learning {result['learn_s']:.1f} s, rest "
                    f"{rest:.1f} s)"
                )
            print(
                f"{name:<10} seed {seed}: {'reached' if result['reached'] else 'MISSED '} "
                f"{TARGET:g} after {result['steps']:>7} steps, {result['wall']:6.1f} s wall, "
                f"peak {result['peak_mb']:.0f} MB{split}",
                flush=True,
            )

    print(f"\nmedian over seeds (wall includes start-up; target mean return {TARGET:g})")
    medians = {}
    for name in contenders:
        ok = [r for n, _, r in rows if n == name and "error" not in r]
        if not ok:
            continue
        walls = sorted(r["wall"] for r in ok)
        steps = sorted(r["steps"] for r in ok)
        medians[name] = walls[len(walls) // 2]
        reached = sum(r["reached"] for r in ok)
        print(
            f"  {name:<10} {medians[name]:6.1f} s  {steps[len(steps) // 2]:>7} steps  "
            f"reached {reached}/{len(ok)}  peak {max(r['peak_mb'] for r in ok):.0f} MB"
        )
    for peer in ("sb3", "rllib"):
        if "learnerkit" in medians and peer in medians:
            ratio = medians["learnerkit"] / medians[peer]
            print(f"  learnerkit / {peer} wall-time ratio: {ratio:.2f} (below 1 is faster)")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
