"""DQN's learning bar (issue 18), seed by seed: ``learnerkit train dqn`` with its defaults
reaches a last-100 training mean of 400 and a greedy evaluation mean of 475 (10 episodes)
on CartPole-v1 within 100,000 env steps, for 3 of 3 seeds on torch with
``num_env_runners`` 0 and with 2 (Ray), and one seed on TensorFlow; and Acrobot-v1 a
last-100 mean of -100 within 100,000 steps for one seed. Every run is a fresh subprocess
(wall time includes start-up and the evaluation); the table says which met their bar, and
the exit status is 1 if any missed it.

    python bench/dqn_learning.py [--seeds 0 1 2] [--only cartpole-torch ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys

from impala_cartpole import run_child

CASES = {
    # name: (env, framework, env runners, training bar, evaluation bar)
    "cartpole-torch": ("CartPole-v1", "torch", 0, 400.0, 475.0),
    "cartpole-torch-2-ray-runners": ("CartPole-v1", "torch", 2, 400.0, 475.0),
    "cartpole-tf": ("CartPole-v1", "tf", 0, 400.0, 475.0),
    "acrobot-torch": ("Acrobot-v1", "torch", 0, -100.0, -100.0),
}
ONE_SEED = {"cartpole-tf", "acrobot-torch"}

CODE = """
import json
from learnerkit.loops import TrainConfig, evaluate_checkpoint, train
overrides = {{"num_env_runners": {runners}}} if {runners} else {{}}
if {runners}:
    overrides["num_cpus_per_env_runner"] = 0.5  # two runners and the driver on 2 cores
s = train(TrainConfig(algorithm="dqn", env_id={env!r}, framework={framework!r}, seed={seed},
                      stop_reward={bar}, stop_timesteps={budget}, overrides=overrides,
                      out_dir={out!r}, progress=False))
evaluation, _ = evaluate_checkpoint({out!r}, num_episodes=10)
print("RESULT", json.dumps({{"steps": s.timesteps_total, "reached": s.reached_stop_reward,
    "return": s.episode_return_mean, "eval": evaluation}}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    parser.add_argument("--budget", type=int, default=100_000)
    args = parser.parse_args()
    print(f"{'case':<30} {'seed':>4} {'steps':>7} {'train':>7} {'eval':>7} {'wall s':>7}  bar met")
    summary, missed = [], []
    for name in args.only:
        env, framework, runners, bar, eval_bar = CASES[name]
        seeds = args.seeds[:1] if name in ONE_SEED else args.seeds
        results = []
        for seed in seeds:
            code = CODE.format(
                env=env,
                framework=framework,
                runners=runners,
                seed=seed,
                bar=bar,
                budget=args.budget,
                out=f"/tmp/lk-dqn-learning-{name}-{seed}",
            )
            r = run_child(code, sys.executable)
            if "error" in r:
                print(f"{name:<30} {seed:>4} failed: {r['error']}", flush=True)
                missed.append(name)
                continue
            met = r["reached"] and r["eval"] >= eval_bar
            results.append((r, met))
            print(
                f"{name:<30} {seed:>4} {r['steps']:>7} {r['return'] or float('nan'):>7.1f} "
                f"{r['eval']:>7.1f} "
                f"{r['wall']:>7.1f}  {'yes' if met else 'NO'}",
                flush=True,
            )
        if results:
            met = sum(m for _, m in results)
            steps = statistics.median([r["steps"] for r, _ in results])
            summary.append(f"  {name:<30} met {met}/{len(seeds)}, median {steps:.0f} steps")
            if met < len(results):
                missed.append(name)
    print("\n" + "\n".join(summary))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
