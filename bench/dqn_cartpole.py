"""DQN on CartPole-v1: wall time, env steps and peak memory to a last-100 training mean of
400 and a greedy evaluation mean of 475 (10 episodes), within 100,000 env steps.

learnerkit DQN (its defaults: ``learnerkit train dqn``) against Stable-Baselines3's DQN with
rl-baselines3-zoo's CartPole-v1 settings (``hyperparams/dqn.yml``: learning_rate 2.3e-3,
batch_size 64, buffer_size 100000, learning_starts 1000, gamma 0.99,
target_update_interval 10, train_freq 256, gradient_steps 128, exploration_fraction 0.16 of
the zoo's 5e4 steps, exploration_final_eps 0.04, net_arch [256, 256]) and RLlib's DQN (new
API stack, ``rllib/tuned_examples/dqn/cartpole_dqn.py``: lr 5e-4,
train_batch_size_per_learner 32, a prioritized buffer of 50000 (alpha 0.6, beta 0.4),
n_step (2, 5), double_q, dueling, epsilon [(0, 1.0), (10000, 0.02)], fcnet_hiddens [256],
tanh, head_fcnet_hiddens [256]; run with ``--rllib-python``, its own venv), in the same run.

Every contender runs in a fresh subprocess, so wall time includes interpreter and library
start-up (and Ray's, for RLlib) and the greedy evaluation at the end. Each trains until its
last-100-episode training mean reaches 400 (or the budget), then plays 10 greedy episodes;
a run meets the criterion when both bars are met. Torch runs on one thread in every
contender. Peak memory: the largest sum of resident memory (VmRSS, from /proc every 0.2 s)
over the child and all its descendants (learnerkit's output child; RLlib's Ray daemons).
learnerkit's time is split from its metrics.csv into start-up and exit, sampling, the
replay buffer (adding, sampling, priorities), learning (``LearnerGroup.update`` and
``additional_update``) and the rest.

    python bench/dqn_cartpole.py --rllib-python /tmp/rllib-venv/bin/python [--seeds 0 1 2]

Measured (2 cores shared with other sessions' test suites and benchmarks, load average 6-10
throughout, so every wall time is 1.5-2.5x a quiet machine's; about 26 minutes, stopped
before SB3's seed 2): learnerkit seeds 0-2 met the criterion at 69,632 / 71,680 / 63,488
steps (greedy 500 each) in 126.7 / 139.0 / 70.3 s, peak 329-330 MiB; SB3 seeds 0-1 missed it
(training mean 64.7 / 39.6, greedy 157.5 / 115.6 after the 100k budget) in 479.2 / 450.8 s,
peak 322-323 MiB; RLlib seed 0 reached a training mean of 408 at 34,000 steps but evaluated
at 254.2 (missed) in 263.8 s, peak 1,249 MiB. Medians: learnerkit / SB3 wall time 0.27
(target 0.5: met; an upper bound, as SB3 did not reach the criterion within its budget),
peak memory 1.02 (target 1.0: missed by about 7 MiB); learnerkit / RLlib wall 0.48, memory 0.26.
learnerkit's loop time: learner 91-93%, replay buffer 4-6%, sampling 2-3%. Its peak is the
training process (253 MiB, 0.79x SB3's: 193 MiB of it is importing torch) plus the host's
output child (73 MiB: matplotlib for the learning curve, 39 MiB, and TensorBoard), which every
algorithm's run has (PPO's tree measures the same 326 MiB here).

Since the curve is drawn by the training process at the end, after the output child (now
TensorBoard only, ~32 MiB) has exited (seed 0 of each, ``--seeds 0 --skip-rllib``, SB3
2.9.2, load 5-10): before, learnerkit peak 330 MiB, SB3 356 MiB, ratio 0.93; after,
learnerkit 289 MiB, SB3 355 MiB, ratio 0.81 (learnerkit met the criterion at 69,632 steps
both times; SB3 2.9.2 peaks ~33 MiB above the SB3 of the run above).
"""

from __future__ import annotations

import argparse
import statistics
import sys

from impala_cartpole import rllib_available, run_child

TRAIN_TARGET, EVAL_TARGET, BUDGET = 400.0, 475.0, 100_000

LEARNERKIT = """
import csv, json
from learnerkit.loops import TrainConfig, evaluate_checkpoint, train
s = train(TrainConfig(algorithm="dqn", seed={seed}, stop_reward={train_target},
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
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

class Stop(BaseCallback):
    def _on_step(self):
        buf = self.model.ep_info_buffer
        return not (len(buf) == 100 and sum(e["r"] for e in buf) / 100 >= {train_target})

env = make_vec_env("CartPole-v1", n_envs=1, seed={seed})
# rl-baselines3-zoo hyperparams/dqn.yml, CartPole-v1; its exploration lasts 16% of its 5e4
# steps (8000), kept as 8000 steps of this budget.
model = DQN("MlpPolicy", env, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
            learning_starts=1000, gamma=0.99, target_update_interval=10, train_freq=256,
            gradient_steps=128, exploration_fraction=0.16 * 5e4 / {budget},
            exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]),
            seed={seed}, verbose=0)
model.learn(total_timesteps={budget}, callback=Stop())
buf = model.ep_info_buffer
mean = sum(e["r"] for e in buf) / max(len(buf), 1)
evaluation, _ = evaluate_policy(model, gym.make("CartPole-v1"), n_eval_episodes=10,
                                deterministic=True)
print("RESULT", json.dumps({{"steps": model.num_timesteps, "return": mean,
    "reached": len(buf) == 100 and mean >= {train_target}, "eval": float(evaluation)}}))
"""

RLLIB = """
import json, logging, os
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
import torch
torch.set_num_threads(1)
import ray
from ray.rllib.algorithms.dqn import DQNConfig
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
# rllib/tuned_examples/dqn/cartpole_dqn.py
config = (
    DQNConfig().environment("CartPole-v1").framework("torch")
    .training(lr=0.0005, train_batch_size_per_learner=32,
              replay_buffer_config={{"type": "PrioritizedEpisodeReplayBuffer",
                                     "capacity": 50000, "alpha": 0.6, "beta": 0.4}},
              n_step=(2, 5), double_q=True, dueling=True, epsilon=[(0, 1.0), (10000, 0.02)])
    .rl_module(model_config=DefaultModelConfig(
        fcnet_hiddens=[256], fcnet_activation="tanh", fcnet_bias_initializer="zeros_",
        head_fcnet_bias_initializer="zeros_", head_fcnet_hiddens=[256]))
    .evaluation(evaluation_interval=10**9, evaluation_duration=10,
                evaluation_duration_unit="episodes",
                evaluation_config=DQNConfig.overrides(explore=False))
    .debugging(seed={seed})
)
algo = config.build_algo()
steps, ret = 0, None
while steps < {budget}:
    r = algo.train()
    steps = r["num_env_steps_sampled_lifetime"]
    ret = r["env_runners"].get("episode_return_mean")
    if ret is not None and ret >= {train_target}:
        break
evaluation = algo.evaluate()["env_runners"]["episode_return_mean"]
print("RESULT", json.dumps({{"steps": int(steps), "return": float(ret or 0),
    "reached": bool(ret is not None and ret >= {train_target}), "eval": float(evaluation)}}))
algo.stop()
"""


def run(code: str, python: str) -> dict:
    """One contender's run in a fresh interpreter (``impala_cartpole.run_child``: wall time,
    the peak of resident memory summed over its process tree), and whether it met both bars."""
    result = run_child(code, python)
    if "error" not in result:
        result["met"] = result["reached"] and result["eval"] >= EVAL_TARGET
    return result


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
        f"{name:<10} seed {seed}: {'met   ' if r['met'] else 'MISSED'} train {r['return']:5.1f} "
        f"eval {r['eval']:5.1f} after {r['steps']:>6} steps, {r['wall']:6.1f} s wall, "
        f"peak {r['peak_mib']:.0f} MiB{split}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sb3-seeds", type=int, nargs="+", default=None)
    parser.add_argument("--rllib-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--budget", type=int, default=BUDGET, help="env steps per run")
    parser.add_argument("--skip-sb3", action="store_true")
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
            train_target=TRAIN_TARGET,
            budget=args.budget,
            out=f"/tmp/lk-bench-dqn-{seed}",
        )
        result = run(code, args.rllib_python if name == "rllib" else sys.executable)
        rows.append((name, seed, result))
        print(describe(name, seed, result), flush=True)

    print(
        f"\nmedians over seeds (wall includes start-up and evaluation; criterion: training mean "
        f"{TRAIN_TARGET:g} and greedy evaluation {EVAL_TARGET:g} within {args.budget} steps)"
    )
    medians = {}
    for name in seeds:
        ok = [r for n, _, r in rows if n == name and "error" not in r]
        if not ok:
            continue
        medians[name] = {
            k: statistics.median([r[k] for r in ok]) for k in ("wall", "steps", "peak_mib")
        }
        m = medians[name]
        print(
            f"  {name:<10} {m['wall']:6.1f} s  {m['steps']:>8.0f} steps  peak {m['peak_mib']:5.0f} "
            f"MiB  met {sum(r['met'] for r in ok)}/{len(ok)}"
        )
    for peer in ("sb3", "rllib"):
        if "learnerkit" in medians and peer in medians:
            lk, other = medians["learnerkit"], medians[peer]
            print(
                f"  learnerkit / {peer}: wall time {lk['wall'] / other['wall']:.2f}, peak memory "
                f"{lk['peak_mib'] / other['peak_mib']:.2f} (below 1: less)"
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
