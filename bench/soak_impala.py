"""Soak (issue 21 §4, not CI): IMPALA on CartPole for 30 minutes (``--minutes``) with Ray env
runners (2) and Ray learners (2), the memory of every process of the run (the driver, Ray's
daemons and workers: RSS from /proc) and Ray's object-store use sampled every 10 s
(``--every``). Prints the samples and, after the warm-up (``--warmup-minutes``), the
least-squares slope of each in MiB per hour: flat is what a run that does not leak shows.

    python bench/soak_impala.py --minutes 30 --csv soak.csv

Exit status 1 if the total RSS grows by more than ``--max-slope`` MiB per hour after the
warm-up. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MIB = 1024**2


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def tree_rss_mib(root: int) -> tuple[float, int]:
    """RSS summed over ``root`` and its descendants (Ray's daemons and workers are the
    driver's), and how many processes that is."""
    children, todo, total, count = _children(), [root], 0, 0
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        if match:
            total += int(match.group(1)) * 1024
            count += 1
    return total / MIB, count


def object_store_mib() -> float | None:
    """Ray's object-store (plasma) use, from its memory summary; None if Ray says nothing."""
    try:
        from ray._private.internal_api import memory_summary

        text = memory_summary(stats_only=True)
    except Exception:
        return None
    match = re.search(r"Plasma memory usage (\d+(?:\.\d+)?) MiB", text)
    return float(match.group(1)) if match else None


def slope_per_hour(t_s: list[float], values: list[float]) -> float:
    if len(t_s) < 2:
        return float("nan")
    return float(np.polyfit(np.asarray(t_s) / 3600.0, values, 1)[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup-minutes", type=float, default=5.0)
    parser.add_argument("--max-slope", type=float, default=50.0, help="MiB per hour")
    parser.add_argument("--env-runners", type=int, default=2)
    parser.add_argument("--learners", type=int, default=2)
    parser.add_argument("--csv", default=None, help="write the samples here")
    args = parser.parse_args(argv)

    import ray

    from learnerkit._distributed.start import LOCAL_RAY_SYSTEM_CONFIG
    from learnerkit.loops import TrainConfig, train

    # As a run's own local Ray starts (learnerkit._distributed.start), with 4 logical CPUs.
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        object_store_memory=256 * MIB,
        _system_config=LOCAL_RAY_SYSTEM_CONFIG,
    )
    samples: list[dict[str, float]] = []
    started = time.perf_counter()
    next_at = started

    def on_iteration(ctx) -> None:
        nonlocal next_at
        now = time.perf_counter()
        if now >= next_at:
            rss, processes = tree_rss_mib(os.getpid())
            sample = {
                "t_s": round(now - started, 1),
                "rss_mib": round(rss, 1),
                "processes": processes,
                "object_store_mib": object_store_mib(),
                "timesteps": ctx.timesteps,
                "return_mean": ctx.metrics.get("episode_return_mean"),
            }
            samples.append(sample)
            print(sample, flush=True)
            next_at = now + args.every
        if now - started >= args.minutes * 60:
            raise KeyboardInterrupt  # the run ends with a checkpoint, as on Ctrl-C

    with tempfile.TemporaryDirectory() as out:
        train(
            TrainConfig(
                algorithm="impala",
                num_learners=args.learners,
                stop_reward=1e9,  # never: the soak runs for its minutes
                stop_timesteps=10**12,
                out_dir=out,
                progress=False,
                overrides={
                    "num_env_runners": args.env_runners,
                    "num_cpus_per_env_runner": 0.5,
                },
            ),
            on_iteration=on_iteration,
        )
    ray.shutdown()
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, list(samples[0]))
            writer.writeheader()
            writer.writerows(samples)
    after = [s for s in samples if s["t_s"] >= args.warmup_minutes * 60]
    t = [s["t_s"] for s in after]
    rss_slope = slope_per_hour(t, [s["rss_mib"] for s in after])
    stores = [s["object_store_mib"] for s in after]
    store_slope = slope_per_hour(t, stores) if all(v is not None for v in stores) else float("nan")
    print(
        f"{len(samples)} samples over {samples[-1]['t_s'] / 60:.1f} min, "
        f"{samples[-1]['timesteps']:,} env steps; after {args.warmup_minutes:g} min of warm-up: "
        f"RSS {after[0]['rss_mib'] if after else 'n/a'} -> "
        f"{after[-1]['rss_mib'] if after else 'n/a'} MiB, slope {rss_slope:+.1f} MiB/h; "
        f"object store slope {store_slope:+.1f} MiB/h"
    )
    return 1 if rss_slope > args.max_slope else 0


if __name__ == "__main__":
    sys.exit(main())
