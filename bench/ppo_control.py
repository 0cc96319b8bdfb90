"""PPO's learning targets on classic control, with the plugin's tuned presets.

    python bench/ppo_control.py [--framework torch|tf] [--envs CartPole-v1 Acrobot-v1 ...]
                                [--seeds 0 1 2]

Targets (mean return over the last 100 episodes): CartPole-v1 >= 475 within 100k env
steps, Acrobot-v1 >= -100, Pendulum-v1 >= -250 within 1M env steps. Each run stops at its
target or its budget; the table says whether it got there, after how many steps and how
long.
"""

from __future__ import annotations

import argparse

from learnerkit.loops import TrainConfig, train

TARGETS = {
    "CartPole-v1": (475.0, 100_000),
    "Acrobot-v1": (-100.0, 1_000_000),
    "Pendulum-v1": (-250.0, 1_000_000),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=["torch", "tf"], default="torch")
    parser.add_argument("--envs", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    rows = []
    for env_id in args.envs:
        target, budget = TARGETS[env_id]
        for seed in args.seeds:
            summary = train(
                TrainConfig(
                    env_id=env_id,
                    framework=args.framework,
                    seed=seed,
                    stop_reward=target,
                    stop_timesteps=budget,
                    out_dir=f"/tmp/lk-bench-control/{env_id}-{args.framework}-{seed}",
                    progress=False,
                )
            )
            rows.append((env_id, seed, summary))
            outcome = "reached" if summary.reached_stop_reward else "MISSED "
            print(
                f"{env_id:<12} seed {seed}: {outcome}"
                f" {target:g} (last-100 mean {summary.episode_return_mean:.1f}) after "
                f"{summary.timesteps_total} steps in {summary.wall_seconds:.1f} s",
                flush=True,
            )
    print(f"\n{args.framework}: targets reached")
    for env_id in args.envs:
        mine = [s for e, _, s in rows if e == env_id]
        reached = sum(s.reached_stop_reward for s in mine)
        print(f"  {env_id:<12} {reached}/{len(mine)} seeds (target {TARGETS[env_id][0]:g})")


if __name__ == "__main__":
    main()
