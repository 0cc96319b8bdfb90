"""``learnerkit tune``: the subcommand's arguments and what it prints. Registered by
``learnerkit.cli``; light to import (argparse only), so that building the parser loads
neither Ray nor an algorithm."""

from __future__ import annotations

import argparse
from typing import Any

SPACE_HELP = (
    "NAME=SPEC, repeatable: a hyperparameter (learning_rate), model_config.KEY or "
    "module_hyperparameters.MODULE.KEY, and a search space: choice(a,b,...), grid(a,b,...), "
    "uniform(lo,hi), loguniform(lo,hi), randint(lo,hi) (hi excluded), or a constant"
)


def add_tune_parser(sub: Any) -> None:
    p = sub.add_parser(
        "tune",
        help="sweep hyperparameters on Ray Tune (FIFO, ASHA or population-based training)",
        description="Sweep hyperparameters on Ray Tune. Guide: docs/guides/tune.md",
    )
    p.add_argument("algorithm", nargs="?", default="ppo", help="algorithm name (default: ppo)")
    p.add_argument("--env", default=None, help="gymnasium env id (default: CartPole-v1)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=SPEC", help=SPACE_HELP)
    p.add_argument(
        "--config",
        default=None,
        help="JSON or TOML file of settings as `learnerkit train --config` reads, whose "
        'string values may be SPECs ("loguniform(1e-4, 1e-2)"); --param wins over it',
    )
    p.add_argument("--num-samples", type=int, default=1, help="samples of the space")
    p.add_argument("--scheduler", choices=["fifo", "asha", "pbt"], default="fifo")
    p.add_argument(
        "--max-concurrent", type=int, default=None, help="trials at once (default: as fit)"
    )
    p.add_argument("--metric", default="episode_return_mean", help="the result to optimise")
    p.add_argument("--mode", choices=["max", "min"], default="max")
    p.add_argument(
        "--perturbation-interval",
        type=int,
        default=4,
        help="pbt: training iterations between exploits (default: 4)",
    )
    p.add_argument(
        "--grace-period",
        type=int,
        default=4,
        help="asha: iterations every trial gets before it may be stopped (default: 4)",
    )
    p.add_argument("--framework", choices=["torch", "tf"], default="torch")
    p.add_argument("--num-learners", type=int, default=0, help="Ray learner actors per trial")
    p.add_argument(
        "--num-cpus-per-learner", type=float, default=1, help="CPUs each Ray learner reserves"
    )
    p.add_argument("--num-gpus-per-learner", type=float, default=0)
    p.add_argument("--stop-reward", type=float, default=None, help="a trial stops at this")
    p.add_argument("--stop-timesteps", type=int, default=None, help="a trial's env steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ray-address", default=None, help="Ray cluster to join (default: local)")
    p.add_argument("--out", default=None, help="output directory (default: runs/tune-ALGO-ENV)")
    p.add_argument("--quiet", action="store_true", help="no table of trials")
    p.set_defaults(func=tune_command)


def tune_command(args: argparse.Namespace) -> int:
    from learnerkit.loops._run_output import read_config_file, refuse_run_settings
    from learnerkit.loops._setup import DEFAULT_ENV_ID
    from learnerkit.loops.contract import TrainConfig
    from learnerkit.tune._sweeps import SweepConfig, sweep
    from learnerkit.tune.space import parse_space, space_from_table

    space: dict[str, Any] = {}
    modules_to_train = None
    if args.config:
        table = read_config_file(args.config, args.algorithm)
        refuse_run_settings(table, args.config)
        modules_to_train = table.pop("modules_to_train", None)
        space = space_from_table(table)
    space.update(parse_space(args.param))
    env = args.env or DEFAULT_ENV_ID
    summary = sweep(
        SweepConfig(
            train=TrainConfig(
                algorithm=args.algorithm,
                env_id=env,
                framework=args.framework,
                seed=args.seed,
                num_learners=args.num_learners,
                num_cpus_per_learner=args.num_cpus_per_learner,
                num_gpus_per_learner=args.num_gpus_per_learner,
                stop_reward=args.stop_reward,
                stop_timesteps=args.stop_timesteps,
                modules_to_train=modules_to_train,
                ray_address=args.ray_address,
                progress=False,
            ),
            space=space,
            num_samples=args.num_samples,
            scheduler=args.scheduler,
            max_concurrent=args.max_concurrent,
            metric=args.metric,
            mode=args.mode,
            perturbation_interval=args.perturbation_interval,
            grace_period=args.grace_period,
            out_dir=args.out or f"runs/tune-{args.algorithm}-{env}",
            verbose=0 if args.quiet else 1,
        )
    )
    shown = ", ".join(f"{n}={v!r}" for n, v in summary.best_values.items()) or "(no values)"
    metric = "n/a" if summary.best_metric is None else f"{summary.best_metric:.1f}"
    print(f"{summary.trials} trials; best {summary.best_trial}: {args.metric} {metric}")
    print(f"best values:    {shown}")
    if args.scheduler == "pbt":
        print(f"exploits:       {summary.exploits} (a trial restored from another's checkpoint)")
    print(f"best config:    {summary.best_config}")
    print(f"checkpoint:     {summary.best_checkpoint}")
    print(f"curves:         {summary.curves}")
    flags = [f"--env {env}"]
    if args.framework != "torch":
        flags.append(f"--framework {args.framework}")
    if args.num_learners:
        flags.append(f"--num-learners {args.num_learners}")
    if args.num_cpus_per_learner != 1:
        flags.append(f"--num-cpus-per-learner {args.num_cpus_per_learner:g}")
    if args.num_gpus_per_learner:
        flags.append(f"--num-gpus-per-learner {args.num_gpus_per_learner:g}")
    if args.seed:
        flags.append(f"--seed {args.seed}")
    print(
        f"train with:     learnerkit train {args.algorithm} {' '.join(flags)} --config "
        f"{summary.best_config}"
    )
    return 0
