"""The ``learnerkit`` command: list plugins, train, evaluate, collect, tune.

Resilient where the library is strict: a broken plugin is shown with its error, and a bad
argument ends with one clear line instead of a traceback. Public so that a host can run a
command in its own process (``main(["train", "--algo", "ppo"])``) and read the parser.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence

from learnerkit.errors import ConfigError, LearnerkitDeprecationWarning, LearnerkitError

__all__ = ["build_parser", "main"]


def _list_plugins(args: argparse.Namespace) -> int:
    from learnerkit._plugins import list_plugins
    from learnerkit.training_loops import list_training_loops

    rows = list_plugins()
    loops = list_training_loops()
    if args.json:
        # One list: the algorithms as before, then the loops (same keys, told by "kind").
        print(json.dumps([row.as_dict() for row in [*rows, *loops]], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    loop_status = {loop.name: loop.status for loop in loops}
    # A value too long for a terminal wraps ("fold") rather than end in an ellipsis: a cut
    # package or hook name says nothing.
    table = Table(title="learnerkit algorithms")
    for column in ("name", "version", "package", "frameworks", "loop", "hooks", "status"):
        table.add_column(column, overflow="fold")
    for row in rows:
        loop = row.training_loop or "-"
        status = loop_status.get(loop, "not installed")
        if row.training_loop and status != "ok":
            loop = f"{loop} [yellow]({status})"
        table.add_row(
            row.name,
            row.version or "-",
            row.package or "-",
            ", ".join(row.frameworks) or "-",
            loop,
            ", ".join(row.hooks) or "-",
            _STATUS.get(row.status, "[red]error"),
        )
    loop_table = Table(title="learnerkit training loops")
    for column in ("name", "version", "package", "settings", "declares", "status"):
        loop_table.add_column(column, overflow="fold")
    for loop in loops:
        declared = [name for name, value in (loop.declares or {}).items() if value]
        loop_table.add_row(
            loop.name,
            loop.version or "-",
            loop.package or "-",
            (loop.settings or "-").rpartition(":")[2],
            ", ".join(declared) or "-",
            _STATUS.get(loop.status, "[red]error"),
        )
    console = Console()
    if not console.is_terminal:  # a file or a CI log: as wide as the tables, not 80 columns
        unbounded = Console(width=1000)
        widest = max(unbounded.measure(t).maximum for t in (table, loop_table))
        console = Console(width=max(console.width, widest))
    console.print(table)
    console.print(loop_table)
    for row in [*rows, *loops]:
        if row.error:
            console.print(f"[red]{row.name}[/red]: {row.error}", markup=True, highlight=False)
    if not rows:
        console.print("no algorithms installed: try `pip install learnerkit-ppo`")
    if not loops:
        console.print(
            "no training loops installed: learnerkit's own come with its package metadata; "
            "reinstall learnerkit (`pip install -e .` in a source checkout)"
        )
    return 0


_STATUS = {"ok": "[green]ok", "disabled": "[yellow]disabled", "incompatible": "[red]incompatible"}


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train an algorithm on a gymnasium environment or an offline dataset"
    )
    # None until resolved: "ppo" and "torch", or with --resume the run's (a different one
    # given is refused, not silently replaced by the run's).
    p.add_argument("algorithm", nargs="?", default=None, help="algorithm name (default: ppo)")
    p.add_argument(
        "--env",
        default=None,
        help="gymnasium env id (default: CartPole-v1; offline: evaluate in the dataset's env),"
        " or a PettingZoo parallel env: pettingzoo:MODULE[:FACTORY]",
    )
    p.add_argument(
        "--policy-mapping",
        type=_policy_mapping,
        default="shared",
        help="PettingZoo envs: which module acts for each agent: shared (one module, the "
        "default), per_agent (a module per agent), or AGENT=MODULE,AGENT=MODULE,...",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="offline algorithms (bc): a Minari dataset id in the local store, or a path",
    )
    p.add_argument("--framework", choices=["torch", "tf"], default=None, help="default: torch")
    p.add_argument(
        "--num-envs-per-env-runner",
        dest="num_envs_per_env_runner",
        type=int,
        default=None,
        help="envs each runner (or the driver) steps (default: tuned)",
    )
    p.add_argument(
        "--num-envs",
        dest="num_envs_per_env_runner",
        type=int,
        action=_RenamedOption,
        new_name="--num-envs-per-env-runner",
        help=argparse.SUPPRESS,  # the old name, for one more release
    )
    p.add_argument(
        "--num-env-runners",
        type=int,
        default=None,
        help="env-runner Ray actors (default: the algorithm's, 0: sample in this process)",
    )
    p.add_argument("--num-learners", type=int, default=0, help="Ray learner actors (0: local)")
    p.add_argument(
        "--num-cpus-per-learner",
        type=float,
        default=1,
        help="CPUs each Ray learner reserves (default 1; 0.5 fits two learners and an env "
        "runner on 2 cores)",
    )
    p.add_argument(
        "--num-gpus-per-learner",
        type=float,
        default=0,
        help="GPUs per learner, at most 1 (0: the CPU; local learner: >0 trains on the first "
        "GPU; Ray learners: 0.5 shares a GPU between two)",
    )
    p.add_argument("--ray-address", default=None, help="Ray cluster to join (default: local)")
    p.add_argument("--stop-reward", type=float, default=None, help="stop at this mean return")
    p.add_argument(
        "--stop-timesteps",
        type=int,
        default=None,
        help="stop after this many env steps (offline: rows trained)",
    )
    p.add_argument(
        "--no-atari-preprocessing",
        dest="atari_preprocessing",
        action="store_false",
        help="ALE/ games: raw frames, no frame skip/stack or reward clipping (default: the "
        "standard preprocessing; change its settings with atari_preprocessing in --config)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output directory (default: runs/ALGO-ENV-SEED)")
    p.add_argument(
        "--config",
        default=None,
        help="JSON or TOML file of hyperparameters, or a run's config.json (its hyperparameters)",
    )
    p.add_argument("--resume", default=None, help="continue from a run directory or checkpoint")
    p.add_argument("--quiet", action="store_true", help="no live progress display")
    p.set_defaults(func=_train)


class _RenamedOption(argparse.Action):
    """An option's old name: sets the new one's value, with a LearnerkitDeprecationWarning
    naming it, as an old settings field name does (``Hyperparameters.renamed_fields``)."""

    def __init__(self, option_strings: list[str], dest: str, *, new_name: str, **kwargs) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new_name = new_name

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        warnings.warn(
            f"the option {option_string} is now called {self.new_name}; rename it (the old "
            "name goes in the next release)",
            LearnerkitDeprecationWarning,
            stacklevel=1,  # argparse's frame says nothing to a user of the command
        )
        setattr(namespace, self.dest, values)


def _policy_mapping(text: str) -> str | dict[str, str]:
    """``shared``, ``per_agent``, or ``AGENT=MODULE,...`` as a dict."""
    if "=" not in text:
        if text not in ("shared", "per_agent"):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not shared, per_agent or AGENT=MODULE,AGENT=MODULE,..."
            )
        return text
    pairs = [item.partition("=") for item in text.split(",") if item]
    if any(not agent or not module for agent, _, module in pairs):
        raise argparse.ArgumentTypeError(f"{text!r}: write AGENT=MODULE pairs, comma-separated")
    return {agent.strip(): module.strip() for agent, _, module in pairs}


def _run_choices(args: argparse.Namespace) -> tuple[str, str]:
    """The algorithm and framework: as given, else the resumed run's, else ppo and torch. A
    resumed run keeps its own, so one given that differs is refused."""
    if not args.resume:
        return args.algorithm or "ppo", args.framework or "torch"
    from learnerkit.loops._run_files import read_run

    run = read_run(args.resume)
    for name, given in (("algorithm", args.algorithm), ("framework", args.framework)):
        if given is not None and given != run[name]:
            raise ConfigError(
                f"the run at {args.resume} is {run['algorithm']} on {run['framework']}, and a "
                f"resumed run keeps both: drop {given!r}, or start a new run"
            )
    return run["algorithm"], run["framework"]


def _train(args: argparse.Namespace) -> int:
    """Build a TrainConfig from the arguments, train, and print where the results are."""
    from pathlib import Path

    from learnerkit.loops._run_files import CHECKPOINT_DIR
    from learnerkit.loops._run_output import read_config_file, refuse_run_settings
    from learnerkit.loops._trainer import RETURN_WINDOW, TrainConfig, train

    algorithm, framework = _run_choices(args)
    overrides: dict = {}
    model_config = None
    module_hps: dict = {}
    modules_to_train = None
    if args.config:
        overrides = read_config_file(args.config, algorithm)
        model_config = overrides.pop("model_config", None)
        module_hps = overrides.pop("module_hyperparameters", {})
        modules_to_train = overrides.pop("modules_to_train", None)
        refuse_run_settings(overrides, args.config)
    atari_preprocessing = overrides.pop("atari_preprocessing", True) if args.config else True
    if not args.atari_preprocessing:
        atari_preprocessing = False
    for name in ("num_envs_per_env_runner", "num_env_runners"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    resume = args.resume
    # Resuming a run directory continues writing into it.
    is_run_dir = resume and (Path(resume) / CHECKPOINT_DIR).is_dir()
    config = TrainConfig(
        algorithm=algorithm,
        env_id=args.env,
        policy_mapping=args.policy_mapping,
        dataset=args.dataset,
        framework=framework,
        seed=args.seed,
        num_learners=args.num_learners,
        num_cpus_per_learner=args.num_cpus_per_learner,
        num_gpus_per_learner=args.num_gpus_per_learner,
        stop_reward=args.stop_reward,
        stop_timesteps=args.stop_timesteps,
        out_dir=args.out or (resume if is_run_dir else None),
        overrides=overrides,
        module_hyperparameters=module_hps,
        modules_to_train=modules_to_train,
        model_config=model_config,
        atari_preprocessing=atari_preprocessing,
        resume=resume,
        progress=not args.quiet,
        ray_address=args.ray_address,
    )
    summary = train(config)
    ret = summary.episode_return_mean
    shown = "n/a" if ret is None else f"{ret:.1f}"
    source = f"{summary.env}" if summary.dataset is None else f"dataset {summary.dataset}"
    steps = "rows trained" if summary.dataset is not None else "env steps"
    print(
        f"{summary.algorithm} on {source}: mean return {shown}"
        f" over the last {RETURN_WINDOW} episodes after {summary.timesteps_total:,} {steps} in "
        f"{summary.wall_seconds:.1f} s"
        + (" (stop reward reached)" if summary.reached_stop_reward else "")
    )
    if summary.agent_return_mean:
        per_agent = ", ".join(f"{a} {r:.1f}" for a, r in summary.agent_return_mean.items())
        print(f"(team return: the sum over agents; per agent: {per_agent})")
    print(f"learning curve: {summary.curve}")
    print(f"checkpoint:     {summary.checkpoint}")
    print(f"evaluate with:  learnerkit evaluate {summary.checkpoint}")
    return 130 if summary.interrupted else 0


def _evaluate(args: argparse.Namespace) -> int:
    from learnerkit.loops._evaluation import evaluate_checkpoint

    mean, returns = evaluate_checkpoint(
        args.checkpoint, env_id=args.env, num_episodes=args.episodes, seed=args.seed
    )
    print(f"mean return over {len(returns)} episodes: {mean:.2f}")
    return 0


def _add_collect_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("collect", help="record a trained policy as a Minari dataset")
    p.add_argument("checkpoint", help="a run directory or a checkpoint directory")
    p.add_argument("--episodes", type=int, required=True, help="episodes to record")
    p.add_argument(
        "--dataset-id", required=True, help="Minari id, [NAMESPACE/]NAME-vN, e.g. cartpole/ppo-v0"
    )
    p.add_argument("--env", default=None, help="env id (default: the one it was trained on)")
    p.add_argument("--greedy", action="store_true", help="most likely actions, not sampled ones")
    p.add_argument("--seed", type=int, default=0, help="episode k is reset with SEED + k")
    p.add_argument("--author", default=None, help="Minari metadata: who made the dataset")
    p.add_argument("--author-email", default=None, help="Minari metadata: how to reach them")
    p.add_argument(
        "--code-permalink", default=None, help="Minari metadata: link to the code that made it"
    )
    p.add_argument("--description", default=None, help="Minari metadata (default: generated)")
    p.set_defaults(func=_collect)


def _collect(args: argparse.Namespace) -> int:
    from learnerkit.loops._collect import collect_dataset

    summary = collect_dataset(
        args.checkpoint,
        num_episodes=args.episodes,
        dataset_id=args.dataset_id,
        env_id=args.env,
        greedy=args.greedy,
        seed=args.seed,
        author=args.author,
        author_email=args.author_email,
        code_permalink=args.code_permalink,
        description=args.description,
    )
    print(
        f"recorded {summary.episodes} episodes ({summary.steps} steps, mean return "
        f"{summary.episode_return_mean:.2f}) in {summary.env} as Minari dataset "
        f"{summary.dataset_id}"
    )
    print(f"dataset:        {summary.path}")
    print(f"train with:     learnerkit train bc --dataset {summary.dataset_id}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``learnerkit`` command's parser (its commands and options, as ``--help`` shows)."""
    parser = argparse.ArgumentParser(prog="learnerkit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list-plugins", help="list installed algorithms and training loops")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=_list_plugins)
    _add_train_parser(sub)
    p = sub.add_parser("evaluate", help="mean return of a saved policy")
    p.add_argument("checkpoint", help="a run directory or a checkpoint directory")
    p.add_argument("--env", default=None, help="env id (default: the one it was trained on)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=1000)
    p.set_defaults(func=_evaluate)
    _add_collect_parser(sub)
    from learnerkit.tune._cli import add_tune_parser

    add_tune_parser(sub)
    p = sub.add_parser(
        "new-plugin", help="write a new algorithm plugin package that passes its own tests"
    )
    p.add_argument("name", help="the algorithm's name (a lower-case identifier, e.g. a2c)")
    p.add_argument(
        "--loop",
        default=None,
        help="the installed training loop it trains with (learnerkit's own: on_policy, async, "
        "offline, replay; default: the on-policy one)",
    )
    p.add_argument("--dir", default=".", help="where to write learnerkit-NAME/ (default: .)")
    p.set_defaults(func=_new_plugin)
    return parser


def _new_plugin(args: argparse.Namespace) -> int:
    from learnerkit._new_plugin import write_plugin

    root = write_plugin(args.name, args.loop, args.dir)
    print(f"wrote {root}/ (algorithm {args.name!r}); next:")
    print(f"  pip install -e {root}        # then `learnerkit list-plugins` shows {args.name}")
    print(f"  pytest {root / 'tests'}")
    print(f"  fill in the hooks in {root / ('learnerkit_' + args.name)}/__init__.py")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``learnerkit`` command with ``argv`` (default: ``sys.argv[1:]``); returns the
    exit status (a LearnerkitError is one line on stderr and status 2)."""
    # Python shows DeprecationWarning only in __main__: a user of the command would never
    # learn that an old setting name in their --config file goes in the next release.
    warnings.simplefilter("default", LearnerkitDeprecationWarning)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LearnerkitError as exc:
        print(f"learnerkit: error: {exc}", file=sys.stderr)
        return 2
