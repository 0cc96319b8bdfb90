"""SAC on Pendulum-v1: wall time (start-up included), env steps and peak memory to a
last-10-episode training mean of -200, within 20,000 env steps (the zoo's budget).

learnerkit SAC (its Pendulum-v1 preset: ``learnerkit train sac --env Pendulum-v1``: 64-64
ReLU networks, Adam at 1e-3 for actor, critics and temperature, batches of 256, one gradient
step per env step after 1,000, tau 0.005, 8 envs sampled 4 steps at a time) against
Stable-Baselines3's SAC with rl-baselines3-zoo's Pendulum-v1 settings (``hyperparams/
sac.yml``: learning_rate 1e-3, the rest SB3's defaults: net_arch [256, 256], batch_size 256,
buffer_size 1e6, learning_starts 100, tau 0.005, gamma 0.99, train_freq 1, gradient_steps 1,
ent_coef "auto") and RLlib's SAC (new API stack, its tuned Pendulum example
``rllib/tuned_examples/sac/pendulum_sac.py``: actor_lr 2e-4, critic_lr 8e-4, alpha_lr 9e-4,
initial_alpha 1.001, n_step (2, 5), tau 0.005, train_batch_size_per_learner 256,
target_network_update_freq 1, a prioritized buffer of 100,000 (alpha 1.0, beta 0.0),
learning starts at 256 steps, fcnet_hiddens [256, 256] ReLU; run with ``--rllib-python``,
its own venv), in the same run.

Every contender runs in a fresh subprocess on one torch thread, so wall time includes
interpreter and library start-up (and Ray's, for RLlib) and the final deterministic
evaluation (10 episodes of the mean action, not part of the criterion). learnerkit's
``train`` judges the last 100 episodes; here its window is set to 10 episodes (its
trainer's ``RETURN_WINDOW``) to judge all three alike. Peak memory: the largest sum of
resident memory (VmRSS, from /proc every 0.2 s) over the child and all its descendants.
learnerkit's time is split from its metrics.csv into start-up and exit, sampling, the
replay buffer (adding, sampling, priorities), learning (``LearnerGroup.update`` and
``additional_update``) and the rest.

    python bench/sac_pendulum.py --rllib-python /tmp/rllib-venv/bin/python [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

TARGET, BUDGET, WINDOW = -200.0, 20_000, 10
PAGE = os.sysconf("SC_PAGE_SIZE")

LEARNERKIT = """
import csv, json
import learnerkit.loops._trainer
learnerkit.loops._trainer.RETURN_WINDOW = {window}  # judged on the last {window} episodes
from learnerkit.loops import TrainConfig, evaluate_checkpoint, train
s = train(TrainConfig(algorithm="sac", env_id="Pendulum-v1", seed={seed}, stop_reward={target},
                      stop_timesteps={budget}, out_dir={out!r}, progress=False))
evaluation, _ = evaluate_checkpoint({out!r}, num_episodes=10)
with open({out!r} + "/metrics.csv", newline="") as f:
    rows = list(csv.DictReader(f))
total = lambda name: sum(float(r[name]) for r in rows)
print("RESULT", json.dumps({{"steps": s.timesteps_total, "reached": s.reached_stop_reward,
    "return": s.episode_return_mean, "eval": evaluation, "loop_s": s.wall_seconds,
    "sample_s": total("sample_time_s"), "buffer_s": total("buffer_time_s"),
    "learn_s": total("learn_time_s")}}))
"""

SB3 = """
import json, torch
torch.set_num_threads(1)
import gymnasium as gym
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

class Stop(BaseCallback):
    def _on_step(self):
        buf = list(self.model.ep_info_buffer)[-{window}:]
        return not (len(buf) == {window} and sum(e["r"] for e in buf) / {window} >= {target})

env = make_vec_env("Pendulum-v1", n_envs=1, seed={seed})
# rl-baselines3-zoo hyperparams/sac.yml, Pendulum-v1: learning_rate 1e-3, SB3's defaults else.
model = SAC("MlpPolicy", env, learning_rate=1e-3, seed={seed}, verbose=0)
model.learn(total_timesteps={budget}, callback=Stop())
buf = list(model.ep_info_buffer)[-{window}:]
mean = sum(e["r"] for e in buf) / max(len(buf), 1)
evaluation, _ = evaluate_policy(model, gym.make("Pendulum-v1"), n_eval_episodes=10,
                                deterministic=True)
print("RESULT", json.dumps({{"steps": model.num_timesteps, "return": mean,
    "reached": len(buf) == {window} and mean >= {target}, "eval": float(evaluation)}}))
"""

RLLIB = """
import json, logging, os
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
import torch
torch.set_num_threads(1)
import ray
from ray.rllib.algorithms.sac import SACConfig
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
# rllib/tuned_examples/sac/pendulum_sac.py
config = (
    SACConfig().environment("Pendulum-v1").framework("torch")
    .training(initial_alpha=1.001, actor_lr=2e-4, critic_lr=8e-4, alpha_lr=9e-4, lr=None,
              target_entropy="auto", n_step=(2, 5), tau=0.005,
              train_batch_size_per_learner=256, target_network_update_freq=1,
              replay_buffer_config={{"type": "PrioritizedEpisodeReplayBuffer",
                                     "capacity": 100000, "alpha": 1.0, "beta": 0.0}},
              num_steps_sampled_before_learning_starts=256)
    .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[256, 256],
                                               fcnet_activation="relu",
                                               head_fcnet_hiddens=[]))
    .reporting(metrics_num_episodes_for_smoothing={window})
    .evaluation(evaluation_interval=10**9, evaluation_duration=10,
                evaluation_duration_unit="episodes",
                evaluation_config=SACConfig.overrides(explore=False))
    .debugging(seed={seed})
)
algo = config.build_algo()
steps, ret = 0, None
while steps < {budget}:
    r = algo.train()
    steps = r["num_env_steps_sampled_lifetime"]
    ret = r["env_runners"].get("episode_return_mean")
    if ret is not None and ret >= {target}:
        break
evaluation = algo.evaluate()["env_runners"]["episode_return_mean"]
print("RESULT", json.dumps({{"steps": int(steps), "return": float(ret or 0),
    "reached": bool(ret is not None and ret >= {target}), "eval": float(evaluation)}}))
algo.stop()
"""


def tree_rss(root: int) -> int:
    """Resident bytes summed over ``root`` and its descendants (ppid links in /proc)."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # not a process, or it just ended
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, ()))
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            pass
    return total


def run_child(code: str, python: str) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [python, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], tree_rss(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = (stream.decode() for stream in proc.communicate())
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": (err or out).strip().splitlines()[-1:] or ["no output"], "wall": wall}
    result = json.loads(lines[-1][len("RESULT ") :])
    return {**result, "met": result["reached"], "wall": wall, "peak_mb": peak[0] / 2**20}


def rllib_available(python: str) -> str | None:
    probe = subprocess.run([python, "-c", "import ray.rllib"], capture_output=True, text=True)
    if probe.returncode == 0:
        return None
    last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
    return f"RLlib not measured: `import ray.rllib` fails with {python} ({last})"


def describe(name: str, seed: int, r: dict) -> str:
    if "error" in r:
        return f"{name:<10} seed {seed}: failed: {r['error']}"
    split = ""
    if "loop_s" in r:  # where learnerkit's time went
        rest = r["loop_s"] - r["sample_s"] - r["buffer_s"] - r["learn_s"]
        split = (
            f"\n{'':<12}start-up, evaluation and exit {r['wall'] - r['loop_s']:.1f} s, sampling "
            f"{r['sample_s']:.1f} s, buffer {r['buffer_s']:.1f} s, learner {r['learn_s']:.1f} s "
            f"({r['learn_s'] / r['loop_s']:.0%} of the loop), rest {rest:.1f} s"
        )
    return (
        f"{name:<10} seed {seed}: {'met   ' if r['met'] else 'MISSED'} last-10 {r['return']:7.1f} "
        f"after {r['steps']:>6} steps, {r['wall']:6.1f} s wall, "
        f"peak {r['peak_mb']:.0f} MB{split}"
    )


def median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sb3-seeds", type=int, nargs="+", default=None)
    parser.add_argument("--rllib-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--budget", type=int, default=BUDGET, help="env steps per run")
    parser.add_argument("--skip-sb3", action="store_true")
    parser.add_argument("--skip-learnerkit", action="store_true")
    parser.add_argument("--skip-rllib", action="store_true")
    parser.add_argument(
        "--rllib-python",
        default=sys.executable,
        help="interpreter with ray[rllib] installed (RLlib pins an older gymnasium: its own venv)",
    )
    args = parser.parse_args()
    seeds = {"learnerkit": args.seeds, "sb3": args.sb3_seeds or args.seeds}
    notes = []
    if args.skip_sb3:
        del seeds["sb3"]
    if args.skip_learnerkit:
        del seeds["learnerkit"]
    if not args.skip_rllib:
        reason = rllib_available(args.rllib_python)
        if reason is None:
            seeds["rllib"] = args.rllib_seeds
        else:
            notes.append(reason)
    templates = {"learnerkit": LEARNERKIT, "sb3": SB3, "rllib": RLLIB}
    # Seeds outer, contenders inner: a load that comes and goes on the machine hits all.
    runs = [
        (name, seed)
        for seed in sorted({s for ss in seeds.values() for s in ss})
        for name in seeds
        if seed in seeds[name]
    ]
    rows = []
    for name, seed in runs:
        code = templates[name].format(
            seed=seed,
            target=TARGET,
            window=WINDOW,
            budget=args.budget,
            out=f"/tmp/lk-bench-sac-{seed}",
        )
        result = run_child(code, args.rllib_python if name == "rllib" else sys.executable)
        rows.append((name, seed, result))
        print(describe(name, seed, result), flush=True)

    print(
        f"\nmedians over seeds (wall includes start-up and evaluation; criterion: a last-"
        f"{WINDOW} training mean of {TARGET:g} within {args.budget} steps)"
    )
    medians = {}
    for name in seeds:
        ok = [r for n, _, r in rows if n == name and "error" not in r]
        if not ok:
            continue
        medians[name] = {k: median([r[k] for r in ok]) for k in ("wall", "steps", "peak_mb")}
        m = medians[name]
        print(
            f"  {name:<10} {m['wall']:6.1f} s  {m['steps']:>8.0f} steps  peak {m['peak_mb']:5.0f} "
            f"MB  met {sum(r['met'] for r in ok)}/{len(ok)}"
        )
    for peer in ("sb3", "rllib"):
        if "learnerkit" in medians and peer in medians:
            lk, other = medians["learnerkit"], medians[peer]
            print(
                f"  learnerkit / {peer}: wall time {lk['wall'] / other['wall']:.2f}, peak memory "
                f"{lk['peak_mb'] / other['peak_mb']:.2f} (below 1: less)"
            )
    lk_rows = [r for n, _, r in rows if n == "learnerkit" and "error" not in r]
    if lk_rows:
        loop = sum(r["loop_s"] for r in lk_rows)
        shares = {
            k: sum(r[f"{k}_s"] for r in lk_rows) / loop for k in ("learn", "sample", "buffer")
        }
        print(
            f"  learnerkit's loop time: learner {shares['learn']:.0%}, sampling "
            f"{shares['sample']:.0%}, replay buffer {shares['buffer']:.0%}"
        )
    print("  (a run that missed the criterion counts with its whole budget's time)")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
