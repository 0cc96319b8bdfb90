"""Chaos during `learnerkit train` (issue 21 §4): PPO or IMPALA with 2 Ray env runners and
2 Ray learners, processes killed at random moments chosen by a seed, and the run checked.

Scenarios (``--scenario``):

- ``env_runner``, ``learner``, ``both``: ``--kills`` times per run, after a seeded
  iteration and a seeded delay into the next one (mid-sample, mid-update, mid-checkpoint),
  an env runner, a learner, or one of each at once, is killed with SIGKILL.
- ``sigint``: ``--kills`` times, SIGINT at a seeded moment; the run stops with a checkpoint
  and is resumed (``resume=``, as ``--resume``), until it ends.

Every run must end with the stop reward and a checkpoint that loads, and at every iteration:
the counters add up (PPO: every env step sampled is trained; IMPALA: ``timesteps_total`` =
``num_env_steps_trained_total`` + ``dropped_env_steps_total`` + ``pending_env_steps``), every
learner has applied exactly the updates the loop counts (``Learner.num_updates``: PPO one
per iteration; IMPALA ``num_updates_total`` + ``updates_in_flight``), all learners hold the
same weights, and a resumed run's counters continue from its checkpoint's. Restarts
reported must match the kills that hit a live process.

    python bench/chaos.py --algorithm impala --scenario both --seeds 0-9 --kills 4

The tests run one short seeded run per scenario (``tests/test_chaos.py``); the sweeps over
seeds, longer runs and more kills are run from here (not in CI). Exit status 1 if any run
fails a check.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

SCENARIOS = ("env_runner", "learner", "both", "sigint")
# Small, quick settings on CartPole: (stop reward, overrides) per algorithm.
PRESETS: dict[str, tuple[float, dict[str, Any]]] = {
    "ppo": (60.0, {"rollout_fragment_length": 32, "num_epochs": 4, "minibatch_size": 128}),
    "impala": (60.0, {"min_sample_timesteps_per_iteration": 1000}),
}


class ChaosFailure(AssertionError):
    """A check of a chaos run failed; the message says which and where."""


def ensure_ray(num_cpus: int = 4) -> None:
    """A local Ray with room for 2 learners and 2 env runners (logical CPUs: on a 2-core
    machine they share the cores)."""
    import ray

    if ray.is_initialized():
        if ray.cluster_resources().get("CPU", 0) >= 3:
            return
        ray.shutdown()
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        object_store_memory=256 * 1024**2,
        log_to_driver=False,
    )


class _Restarts(logging.Handler):
    """Counts the learners' and env runners' restarts as learnerkit logs them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.learners = self.runners = 0

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.name.endswith("distributed.learners") and "Restarting it from" in text:
            self.learners += 1
        elif record.name.endswith("ray_env_runners") and "failed" in text:
            self.runners += 1


def _kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


class _Checks:
    """What the run's callback checks after every iteration, and the kills it schedules."""

    def __init__(
        self,
        algorithm: str,
        rng: np.random.Generator,
        scenario: str,
        kills: int,
        gap: int = 3,
        max_delay_s: float = 1.5,
    ) -> None:
        self.algorithm, self.rng, self.scenario = algorithm, rng, scenario
        self.gap, self.max_delay_s = gap, max_delay_s
        # One kill at a time: the next is armed some iterations (1 to 3, seeded) after the
        # last one fired, so the group has recovered (all learners dying at once is not
        # survivable: docs/faults.md).
        self.kills_left = kills
        self.next_after = int(rng.integers(1, gap + 1))
        self.armed = False
        self.timers: list[threading.Timer] = []
        self.kills: list[dict[str, Any]] = []
        self.iterations = self.last_iteration = 0
        self.failures: list[str] = []

    def fail(self, iteration: int, what: str) -> None:
        self.failures.append(f"iteration {iteration}: {what}")

    def __call__(self, ctx: Any) -> None:
        row, iteration = ctx.metrics, ctx.iteration
        self.iterations += 1
        self.last_iteration = iteration
        module_id = next(iter(ctx.group.spec.module_specs))
        counts = ctx.group.foreach_learner(lambda learner: learner.num_updates(module_id))
        weights = ctx.group.foreach_learner(lambda learner: learner.get_module_state()[module_id])
        pids = ctx.group.foreach_learner(lambda learner: os.getpid())
        if len(set(counts)) != 1:
            self.fail(iteration, f"the learners applied different numbers of updates {counts}")
        for name, array in weights[0].items():
            if any(not np.array_equal(array, other[name]) for other in weights[1:]):
                self.fail(iteration, f"the learners' weights differ ({name})")
                break
        if self.algorithm == "ppo":
            expected = iteration  # one update per iteration (PPO's rows: chaos_run)
        else:
            expected = row["num_updates_total"] + row["updates_in_flight"]
            total = row["num_env_steps_trained_total"] + row["dropped_env_steps_total"]
            total += row["pending_env_steps"]
            if total != row["timesteps_total"]:
                self.fail(
                    iteration,
                    f"env steps sampled {row['timesteps_total']} != trained "
                    f"{row['num_env_steps_trained_total']} + dropped "
                    f"{row['dropped_env_steps_total']} + pending {row['pending_env_steps']}",
                )
        if counts[0] != expected:
            self.fail(
                iteration,
                f"the learners applied {counts[0]} updates, the loop counts {expected} "
                "(an update lost or applied twice)",
            )
        if self.armed and not self.timers[-1].is_alive():  # it fired
            self.armed = False
            self.next_after = iteration + int(self.rng.integers(1, self.gap + 1))
        ready = not self.armed and self.kills_left and iteration >= self.next_after
        if ready and self.scenario != "sigint":
            self.kills_left -= 1
            self.armed = True
            self._arm(iteration, ctx, pids)

    def _arm(self, iteration: int, ctx: Any, learner_pids: list[int]) -> None:
        runner_pids = [info["pid"] for _, info in sorted(ctx.runners.info_by_index.items())]
        targets = []
        if self.scenario in ("env_runner", "both"):
            i = int(self.rng.integers(len(runner_pids)))
            targets.append(("env_runner", i, runner_pids[i]))
        if self.scenario in ("learner", "both"):
            i = int(self.rng.integers(len(learner_pids)))
            targets.append(("learner", i, learner_pids[i]))
        delay = float(self.rng.uniform(0.0, self.max_delay_s))

        def kill() -> None:
            for kind, index, pid in targets:
                hit = _kill(pid)
                self.kills.append(
                    {
                        "after": iteration,
                        "delay_s": round(delay, 3),
                        "kind": kind,
                        "index": index,
                        "hit": hit,
                        "at": round(time.perf_counter(), 2),
                        # The last iteration finished when it hit.
                        "iteration": self.last_iteration,
                    }
                )

        timer = threading.Timer(delay, kill)
        timer.daemon = True
        timer.start()
        self.timers.append(timer)

    def join(self) -> None:
        for timer in self.timers:
            timer.join()


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def chaos_run(
    algorithm: str,
    scenario: str,
    seed: int,
    out_dir: str | os.PathLike,
    *,
    kills: int = 3,
    stop_reward: float | None = None,
    stop_timesteps: int = 300_000,
    framework: str = "torch",
    gap: int = 3,
    max_delay_s: float = 1.5,
) -> dict[str, Any]:
    """One chaos run; returns its report (kills, restarts, counters). Raises ChaosFailure,
    naming every check that failed. A kill is armed 1 to ``gap`` iterations (seeded) after
    the previous one hit, and hits 0 to ``max_delay_s`` seconds into the next iteration."""
    from learnerkit.loops import TrainConfig, train
    from learnerkit.loops._evaluation import evaluate_checkpoint

    if scenario not in SCENARIOS:
        raise ValueError(f"scenario {scenario!r}: pick one of {SCENARIOS}")
    ensure_ray()
    preset_reward, overrides = PRESETS[algorithm]
    stop_reward = preset_reward if stop_reward is None else stop_reward
    out = Path(out_dir)
    rng = np.random.default_rng([seed, SCENARIOS.index(scenario)])
    overrides = {
        **overrides,
        "num_env_runners": 2,
        "num_cpus_per_env_runner": 0.5,
        "max_env_runner_restarts": kills + 5,
    }
    config = TrainConfig(
        algorithm=algorithm,
        framework=framework,
        seed=seed,
        num_learners=2,
        stop_reward=stop_reward,
        stop_timesteps=stop_timesteps,
        out_dir=str(out),
        progress=False,
        overrides=overrides,
        checkpoint_every=5,
    )
    restarts = _Restarts()
    logger = logging.getLogger("learnerkit")
    level = logger.level
    logger.setLevel(logging.WARNING)
    logger.addHandler(restarts)
    checks = _Checks(algorithm, rng, scenario, kills, gap, max_delay_s)
    segments: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        if scenario != "sigint":
            summary = train(config, on_iteration=checks)
            segments.append({"iterations": summary.iterations})
        else:
            summary = _sigint_run(config, checks, rng, kills, segments, gap, max_delay_s)
    except Exception as exc:
        raise ChaosFailure(
            f"{algorithm} {scenario} seed {seed}: the run failed after the kills "
            f"{checks.kills}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from exc
    finally:
        logger.removeHandler(restarts)
        logger.setLevel(level)
        checks.join()
    failures = list(checks.failures)
    rows = _rows(out)
    if not summary.reached_stop_reward:
        failures.append(f"the run ended without the stop reward {stop_reward}: {summary}")
    iterations = [int(r["iteration"]) for r in rows]
    if iterations != list(range(1, len(rows) + 1)):
        failures.append(f"metrics.csv's iterations do not run 1, 2, ...: {iterations}")
    totals = [int(r["timesteps_total"]) for r in rows]
    if algorithm == "ppo":
        trained = [int(float(r["num_env_steps_trained"])) for r in rows]
        sampled = np.diff([0, *totals]).tolist()
        if trained != sampled:
            failures.append(f"PPO trained {trained} env steps per iteration, sampled {sampled}")
    # A kill in the last iteration may go unnoticed (the run ends first); one with a whole
    # iteration after it must have been noticed, and restarted.
    hits = [k for k in checks.kills if k["hit"]]
    last = rows[-1] if rows else {}
    final = int(last.get("iteration") or 0)
    reported = int(float(last.get("env_runner_restarts") or 0))
    for kind, count in (("env_runner", reported), ("learner", restarts.learners)):
        killed = [k for k in hits if k["kind"] == kind]
        noticed = [k for k in killed if k.get("iteration", final) < final - 1]
        if not len(noticed) <= count <= len(killed):
            failures.append(
                f"{len(killed)} {kind}s killed ({len(noticed)} before the last iteration), "
                f"{count} restarts reported"
            )
    interrupted = sum(bool(part.get("interrupted")) for part in segments)
    if scenario == "sigint" and not interrupted:
        failures.append("no SIGINT landed before the run ended: lower the stop reward's pace")
    try:
        mean, _ = evaluate_checkpoint(str(out), num_episodes=3)
    except Exception as exc:  # the check is that it loads, whatever the failure
        failures.append(f"the final checkpoint does not load: {type(exc).__name__}: {exc}")
        mean = None
    report = {
        "algorithm": algorithm,
        "scenario": scenario,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
        "iterations": summary.iterations,
        "timesteps_total": summary.timesteps_total,
        "return_mean": summary.episode_return_mean,
        "kills": checks.kills,
        "segments": segments,
        "env_runner_restarts": reported,
        "learner_restarts": restarts.learners,
        "dropped_env_steps_total": last.get("dropped_env_steps_total"),
        "pending_env_steps": last.get("pending_env_steps"),
        "evaluation": mean,
    }
    if failures:
        raise ChaosFailure(f"{algorithm} {scenario} seed {seed}: " + "; ".join(failures))
    return report


def _sigint_run(config, checks, rng, kills, segments, gap, max_delay_s) -> Any:
    """Interrupt the run ``kills`` times with SIGINT at seeded moments, resuming it each
    time; checks that every resumed part continues the counters of its checkpoint."""
    from learnerkit.loops import train

    summary = None
    previous = signal.signal(signal.SIGINT, lambda *_: None)  # a late SIGINT: ignored
    try:
        for part in range(kills + 1):
            resume = None if part == 0 else config.out_dir
            before = _rows(Path(config.out_dir)) if part else []
            timer: threading.Timer | None = None
            fired: list[float] = []
            after_iterations = int(rng.integers(1, gap + 1))

            def on_iteration(ctx, part=part, after=after_iterations, fired=fired):
                nonlocal timer
                checks(ctx)
                if part < kills and timer is None and checks.iterations >= after:
                    delay = float(rng.uniform(0.0, max_delay_s))

                    def interrupt() -> None:
                        fired.append(time.perf_counter())
                        os.kill(os.getpid(), signal.SIGINT)

                    timer = threading.Timer(delay, interrupt)
                    timer.daemon = True
                    timer.start()
                    checks.kills.append(
                        {
                            "after": ctx.iteration,
                            "delay_s": round(delay, 3),
                            "kind": "sigint",
                            "hit": True,
                        }
                    )

            checks.iterations = 0
            summary = train(
                config if resume is None else _resumed(config), on_iteration=on_iteration
            )
            if timer is not None:
                timer.cancel()
                timer.join()
            rows = _rows(Path(config.out_dir))
            segments.append(
                {
                    "iterations": summary.iterations,
                    "interrupted": summary.interrupted,
                    "sigint": bool(fired),
                }
            )
            if before and len(rows) > len(before):
                first, saved = rows[len(before)], before[-1]
                if int(first["iteration"]) != int(saved["iteration"]) + 1:
                    checks.fail(int(first["iteration"]), "the resumed run's iterations restart")
                if int(first["timesteps_total"]) <= int(saved["timesteps_total"]):
                    checks.fail(int(first["iteration"]), "the resumed run's env steps restart")
            sent = timer is not None and not timer.is_alive() and segments[-1]["sigint"]
            if sent and not summary.interrupted and not summary.reached_stop_reward:
                checks.fail(summary.iterations, "a SIGINT did not stop the run")
            if not summary.interrupted:
                break
    finally:
        signal.signal(signal.SIGINT, previous)
    return summary


def _resumed(config):
    import attrs

    return attrs.evolve(config, resume=config.out_dir)


def _seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds.extend(range(int(low), int(high or low) + 1))
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", choices=sorted(PRESETS), default="impala")
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--seeds", default="0-2", help="e.g. 0-9 or 0,3,7")
    parser.add_argument("--kills", type=int, default=4, help="kills (or SIGINTs) per run")
    parser.add_argument("--stop-reward", type=float, default=None)
    parser.add_argument("--framework", choices=["torch", "tf"], default="torch")
    parser.add_argument("--verbose", action="store_true", help="show learnerkit's warnings")
    args = parser.parse_args(argv)
    # The restarts' warnings are counted, not shown (unless --verbose).
    logging.getLogger("learnerkit").propagate = args.verbose
    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    failed = 0
    for scenario in scenarios:
        for seed in _seeds(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    report = chaos_run(
                        args.algorithm,
                        scenario,
                        seed,
                        tmp,
                        kills=args.kills,
                        stop_reward=args.stop_reward,
                        framework=args.framework,
                    )
                except ChaosFailure as exc:
                    failed += 1
                    print(f"FAIL {exc}", flush=True)
                    if args.verbose and exc.__cause__ is not None:
                        traceback.print_exception(exc.__cause__)
                    continue
            hits = sum(k["hit"] for k in report["kills"])
            print(
                f"pass {args.algorithm} {scenario} seed {seed}: {hits}/{len(report['kills'])} "
                f"kills hit, restarts runner {report['env_runner_restarts']} learner "
                f"{report['learner_restarts']}, {report['iterations']} iterations, "
                f"{report['timesteps_total']} env steps, dropped "
                f"{report['dropped_env_steps_total']}, return {report['return_mean']:.1f}, "
                f"{report['seconds']} s",
                flush=True,
            )
    with contextlib.suppress(Exception):
        import ray

        ray.shutdown()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
