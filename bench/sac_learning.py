"""SAC's learning bars (issue 20), seed by seed: ``learnerkit train sac`` with its presets
reaches a last-100 training mean of -200 on Pendulum-v1 within 50,000 env steps for 3 of 3
seeds on torch and one on TensorFlow, and 950 on InvertedPendulum-v5 (MuJoCo,
``pip install learnerkit[mujoco]``) within 30,000. InvertedPendulum's bar is judged on the
evaluation after 30,000 steps (10 episodes of the mean action): its episodes last up to
1,000 steps, so a last-100 training mean of 950 needs some 95,000 steps of balancing, not
reachable within 30,000 whatever the policy. Every run is a fresh subprocess (wall time
includes start-up and the evaluation).

    python bench/sac_learning.py [--seeds 0 1 2] [--only pendulum-torch ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys

from impala_cartpole import run_child

CASES = {
    # name: (env, framework, bar, budget, judged on: the training mean or the evaluation)
    "pendulum-torch": ("Pendulum-v1", "torch", -200.0, 50_000, "train"),
    "pendulum-tf": ("Pendulum-v1", "tf", -200.0, 50_000, "train"),
    "inverted-pendulum-torch": ("InvertedPendulum-v5", "torch", 950.0, 30_000, "eval"),
}
ONE_SEED = {"pendulum-tf", "inverted-pendulum-torch"}

CODE = """
import json
from learnerkit.loops import TrainConfig, evaluate_checkpoint, train
s = train(TrainConfig(algorithm="sac", env_id={env!r}, framework={framework!r}, seed={seed},
                      stop_reward={stop}, stop_timesteps={budget}, out_dir={out!r},
                      progress=False))
evaluation, _ = evaluate_checkpoint({out!r}, num_episodes=10)
print("RESULT", json.dumps({{"steps": s.timesteps_total, "reached": s.reached_stop_reward,
    "return": s.episode_return_mean, "eval": evaluation}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    args = parser.parse_args()
    print(f"{'case':<26} {'seed':>4} {'steps':>7} {'train':>8} {'eval':>8} {'wall s':>7}  bar met")
    summary = []
    for name in args.only:
        env, framework, bar, budget, judged = CASES[name]
        seeds = args.seeds[:1] if name in ONE_SEED else args.seeds
        results = []
        for seed in seeds:
            out = f"/tmp/lk-sac-learning-{name}-{seed}"
            code = CODE.format(
                env=env,
                framework=framework,
                seed=seed,
                stop=bar if judged == "train" else None,
                budget=budget,
                out=out,
            )
            r = run_child(code, sys.executable)
            if "error" in r:
                print(f"{name:<26} {seed:>4} failed: {r['error']}", flush=True)
                continue
            r["met"] = r["reached"] if judged == "train" else r["eval"] >= bar
            results.append(r)
            print(
                f"{name:<26} {seed:>4} {r['steps']:>7} {r['return']:>8.1f} {r['eval']:>8.1f} "
                f"{r['wall']:>7.1f}  {'yes' if r['met'] else 'NO'}",
                flush=True,
            )
        if results:
            met = sum(r["met"] for r in results)
            steps = statistics.median([r["steps"] for r in results])
            summary.append(f"  {name:<26} met {met}/{len(seeds)}, median {steps:.0f} steps")
    print("\n" + "\n".join(summary))


if __name__ == "__main__":
    main()
