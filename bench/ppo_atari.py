"""PPO on an Atari game (default ALE/Pong-v5): env frames per second, peak memory and the
mean return after a fixed budget of env steps, learnerkit against Stable-Baselines3's PPO
with ``CnnPolicy`` and rl-baselines3-zoo's Atari settings.

The zoo's ``hyperparams/ppo.yml`` (``atari``): 8 envs, 128 steps each per iteration, 4
epochs of minibatches of 256, Adam at 2.5e-4 decaying linearly to 0 over the budget, clip
0.1 decaying linearly to 0, value loss 0.5, entropy 0.01, SB3's defaults else (gamma 0.99,
GAE lambda 0.95, gradient norm 0.5, Adam eps 1e-5, advantages normalised per minibatch, no
value clipping), the ``AtariWrapper`` and a 4-frame ``VecFrameStack``. learnerkit's PPO is
given the same: ``num_env_runners=0`` (the envs step in the driver, as SB3's
``DummyVecEnv``), ``num_envs_per_env_runner=8``, ``rollout_fragment_length=128``,
``minibatch_size=256``, ``num_epochs=4``, ``lr_schedule`` from 2.5e-4 to 0 at the budget,
``clip_param=0.1``, ``vf_loss_coeff=0.5``, ``entropy_coeff=0.01``, gamma 0.99, lambda 0.95,
``grad_clip=0.5``; the same model (the Nature CNN, 512 ReLU units, shared by the policy and
value heads). Differences that remain:

- clip range: learnerkit's PPO has no schedule for ``clip_param``; it stays at 0.1 where
  SB3's decays linearly to 0 (at a budget of 40k steps the schedules only matter late).
- the env: both make ``ALE/Pong-v5`` with ``frameskip=1`` and its sticky actions (0.25);
  the zoo trains on ``PongNoFrameskip-v4``, without them. Preprocessing: no-op starts (30),
  frame skip 4 with max-pooling, 84x84 grey, 4 frames stacked, rewards clipped for training
  on both; SB3's ``AtariWrapper`` also presses FIRE after a reset and ends an episode for
  training on a lost life (Pong has no lives), and greys with OpenCV where learnerkit
  (gymnasium's ``AtariPreprocessing``) takes ALE's grey screen.
- threads: learnerkit keeps torch to one thread in the driver; SB3 is given one too
  (``--sb3-threads``; 0 for torch's default, one per core, which on the busy 2-core host
  below made SB3 4x slower).
- initialisation: SB3 initialises orthogonally (gains sqrt(2), 0.01 for the policy, 1 for
  the value), learnerkit with its own default.

Each contender is a fresh subprocess (``impala_cartpole``'s harness), run one after the
other.

- frames/s: env steps x 4 (the frame skip) / training seconds (learnerkit: its
  ``time_total_s``; SB3: the seconds in ``model.learn``).
- peak MiB: the largest sum of resident memory over the run's process tree, every 0.2 s.
- return: the last-100-episode mean of the game's own (unclipped) returns at the budget.

    python bench/ppo_atari.py --budget 40000
    python bench/ppo_atari.py --quick   # smoke: 2,048 steps each

Pong needs millions of steps: at the budgets a 2-core host affords, compare throughput
and memory, and returns only at the same budget.

Measured on Pong, seed 0, 40,000 env steps (40,960: whole iterations of 1,024) per run,
on the 2 cores shared with other sessions' tests and benchmarks:

- ``--budget 40000`` (SB3 on one thread; 1-minute load 10-12 during learnerkit's run, 9-10
  during SB3's): learnerkit 844 frames/s (sampling 56 s, learning 138 s), SB3 611: 1.38x;
  wall 201 vs 279 s, 0.72x; peak 694 vs 640 MiB, 1.08x (more: learnerkit's process
  tree includes its TensorBoard writer child); return -20.29 vs -20.54 (41 episodes each).
- an earlier run, SB3 with torch's default threads (load 7-13): learnerkit 1,201
  frames/s, SB3 153: 7.85x; peak 667 vs 703 MiB, 0.95x; return -20.29 vs -20.05.

The returns at 40k steps are a random policy's on both sides (-21 to -20): they say the
runs are sound, not which learns better.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile

from impala_cartpole import run_child

FRAME_SKIP = 4
NATURE = [[32, 8, 4], [64, 4, 2], [64, 3, 1]]

LEARNERKIT = """
import json
from learnerkit.loops import TrainConfig, train
s = train(TrainConfig(algorithm="ppo", env_id={env!r}, seed={seed},
                      stop_timesteps={budget}, out_dir={out!r}, progress=False,
                      model_config={{"vf_share_layers": True, "conv_filters": {nature!r},
                                     "hiddens": [512], "activation": "relu"}},
                      overrides={{"num_env_runners": 0, "num_envs_per_env_runner": 8,
                                  "rollout_fragment_length": 128, "minibatch_size": 256,
                                  "num_epochs": 4, "learning_rate": 2.5e-4,
                                  "lr_schedule": [[0, 2.5e-4], [{budget}, 0.0]],
                                  "clip_param": 0.1, "vf_loss_coeff": 0.5,
                                  "entropy_coeff": 0.01, "gamma": 0.99, "lambda_": 0.95,
                                  "grad_clip": 0.5}}))
print("RESULT", json.dumps({{"steps": s.timesteps_total, "reached": False,
                             "return": s.episode_return_mean,
                             "episodes": min(100, s.episodes_total)}}))
"""

SB3 = """
import json, time
import torch
if {sb3_threads}:
    torch.set_num_threads({sb3_threads})
import ale_py
import gymnasium as gym
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack

gym.register_envs(ale_py)

def linear(v):
    return lambda progress: progress * v

# rl-baselines3-zoo hyperparams/ppo.yml, atari
env = VecFrameStack(make_atari_env({env!r}, n_envs=8, seed={seed},
                                   env_kwargs={{"frameskip": 1}}), n_stack=4)
model = PPO("CnnPolicy", env, n_steps=128, n_epochs=4, batch_size=256,
            learning_rate=linear(2.5e-4), clip_range=linear(0.1), vf_coef=0.5,
            ent_coef=0.01, seed={seed}, verbose=0)
start = time.perf_counter()
model.learn(total_timesteps={budget})
seconds = time.perf_counter() - start
buf = model.ep_info_buffer
print("RESULT", json.dumps({{"steps": model.num_timesteps, "reached": False,
    "return": sum(e["r"] for e in buf) / len(buf) if buf else None,
    "episodes": len(buf), "sampled_per_s": model.num_timesteps / seconds}}))
"""


def learnerkit_rates(out_dir: str) -> dict:
    """Env steps per training second, and the seconds spent sampling and learning, from a
    learnerkit run's metrics.csv."""
    with open(os.path.join(out_dir, "metrics.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        "sampled_per_s": int(rows[-1]["timesteps_total"]) / float(rows[-1]["time_total_s"]),
        "sample_s": sum(float(r["sample_time_s"]) for r in rows),
        "learn_s": sum(float(r["learn_time_s"]) for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument("--budget", type=int, default=40_000, help="env steps per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sb3-threads", type=int, default=1, help="torch threads for SB3 (0: torch's default)"
    )
    parser.add_argument("--skip-sb3", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2,048 steps")
    parser.add_argument("--json", metavar="OUT", help="write the raw results here")
    args = parser.parse_args()
    if args.quick:
        args.budget = 2_048
    contenders = {"learnerkit": LEARNERKIT} | ({} if args.skip_sb3 else {"sb3": SB3})
    print(f"PPO on {args.env}, 8 envs x 128 steps, budget {args.budget} env steps")
    results: dict[str, dict] = {}
    for name, template in contenders.items():
        with tempfile.TemporaryDirectory(prefix="lk-bench-ppo-atari-") as out:
            code = template.format(
                out=out,
                env=args.env,
                seed=args.seed,
                budget=args.budget,
                nature=NATURE,
                sb3_threads=args.sb3_threads,
            )
            result = run_child(code, sys.executable)
            if name == "learnerkit" and "error" not in result:
                result.update(learnerkit_rates(out))
        results[name] = result
        if "error" in result:
            print(f"  {name}: FAILED {result['error']}", flush=True)
            continue
        ret = "n/a" if result["return"] is None else f"{result['return']:.2f}"
        print(
            f"  {name:10s} {result['steps']:>8d} steps  wall {result['wall']:6.1f} s  "
            f"frames/s {FRAME_SKIP * result['sampled_per_s']:6.0f}  peak "
            f"{result['peak_mib']:6.0f} MiB  return {ret} (mean of {result['episodes']} "
            "episodes)",
            flush=True,
        )
        if name == "learnerkit":
            print(
                f"  {'':10s} sampling {result['sample_s']:.0f} s, learning "
                f"{result['learn_s']:.0f} s",
                flush=True,
            )
    if all(n in results and "error" not in results[n] for n in ("learnerkit", "sb3")):
        lk, sb3 = results["learnerkit"], results["sb3"]
        print(
            f"  learnerkit / SB3: frames/s {lk['sampled_per_s'] / sb3['sampled_per_s']:.2f}, "
            f"peak memory {lk['peak_mib'] / sb3['peak_mib']:.2f}, wall "
            f"{lk['wall'] / sb3['wall']:.2f}"
        )
        if lk["return"] is not None and sb3["return"] is not None:
            print(f"  return difference {lk['return'] - sb3['return']:+.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
