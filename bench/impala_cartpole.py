"""IMPALA or APPO on CartPole-v1: wall time, env steps, throughput and memory to a mean
return of 450.

learnerkit IMPALA or APPO (`--algorithm`, their defaults) against RLlib's IMPALA or APPO (new
API stack, the settings of RLlib's tuned examples `rllib/tuned_examples/impala/
cartpole_impala.py` and `rllib/tuned_examples/appo/cartpole_appo.py`), in the same run, with the
same env runners (Ray actors) and envs per runner and one local learner. Each contender runs
in a fresh subprocess, so wall time includes interpreter, library and Ray start-up and
shutdown. Both stop at a last-100-episode mean return of 450 or at the step budget, and
both check every 5000 sampled env steps.

- sampled/s: env steps sampled / training seconds (learnerkit: last row's `timesteps_total /
  time_total_s` in metrics.csv; RLlib: `num_env_steps_sampled_lifetime / time_total_s`).
  Training seconds exclude start-up, which only the wall time holds.
- trained/s: env steps the learner has finished updating on / training seconds (learnerkit:
  sum of `num_env_steps_trained` / `time_total_s`; RLlib:
  `learners/__all_modules__/num_env_steps_trained_lifetime`, which also counts the one
  bootstrap step RLlib appends to each episode chunk, so it can exceed sampled).
- peak MiB: the largest sum of resident memory (VmRSS, from /proc every 0.2 s) over the
  child and all its descendants, which includes the Ray daemons (gcs_server, raylet, agents)
  and workers it starts. Pages shared between processes count once per process.
- lag: learnerkit's mean policy lag (learner updates between a fragment's weights and its
  update); RLlib's `diff_num_grad_updates_vs_sampler_policy` of the last iteration.

    python bench/impala_cartpole.py --rllib-python /tmp/rllib-venv/bin/python [--quick]
    python bench/impala_cartpole.py --algorithm appo --rllib-python ...
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

TARGET = 450.0
PAGE = os.sysconf("SC_PAGE_SIZE")

LEARNERKIT = """
import json
from learnerkit.loops import TrainConfig, train
s = train(TrainConfig(algorithm={algorithm!r}, seed={seed}, stop_reward={target},
                      stop_timesteps={budget}, out_dir={out!r}, progress=False,
                      overrides={{"num_env_runners": {runners},
                                  "num_envs_per_env_runner": {envs}}}))
print("RESULT", json.dumps({{"steps": s.timesteps_total, "reached": s.reached_stop_reward,
                             "return": s.episode_return_mean}}))
"""

RLLIB = """
import json, logging, os
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
import ray
from ray.rllib.algorithms.appo import APPOConfig
from ray.rllib.algorithms.impala import IMPALAConfig
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
if {algorithm!r} == "impala":  # rllib/tuned_examples/impala/cartpole_impala.py
    config = IMPALAConfig().training(
        train_batch_size_per_learner=500, grad_clip=40.0, grad_clip_by="global_norm",
        lr=0.0005, vf_loss_coeff=0.05, entropy_coeff=0.0)
else:  # rllib/tuned_examples/appo/cartpole_appo.py
    config = APPOConfig().training(
        circular_buffer_iterations_per_batch=2, vf_loss_coeff=0.05, entropy_coeff=0.0)
config = (config.environment("CartPole-v1").framework("torch")
          .env_runners(num_env_runners={runners}, num_envs_per_env_runner={envs})
          .learners(num_learners=0)
          .rl_module(model_config=DefaultModelConfig(vf_share_layers=True))
          # A result (and stop check) per 5000 sampled steps, as learnerkit's iterations,
          # instead of RLlib's default of one per 10 s.
          .reporting(min_time_s_per_iteration=0, min_sample_timesteps_per_iteration=5000)
          .debugging(seed={seed}))
algo = config.build_algo()
while True:
    r = algo.train()
    steps = r["num_env_steps_sampled_lifetime"]
    ret = r["env_runners"].get("episode_return_mean")
    if (ret is not None and ret >= {target}) or steps >= {budget}:
        break
learners, seconds = r["learners"], r["time_total_s"]
trained = learners["__all_modules__"]["num_env_steps_trained_lifetime"]
print("RESULT", json.dumps({{
    "steps": int(steps), "reached": bool(ret is not None and ret >= {target}),
    "return": float(ret or 0), "sampled_per_s": steps / seconds, "trained_per_s": trained / seconds,
    "lag": learners["default_policy"].get("diff_num_grad_updates_vs_sampler_policy"),
    "dropped": r.get("learner_group", {{}}).get("learner_group_ts_dropped_lifetime", 0)}}))
"""


def tree_rss(root: int) -> tuple[int, int]:
    """Resident bytes summed over `root` and its descendants (ppid links in /proc), and how
    many processes that is."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # not a process, or it just ended
        children.setdefault(ppid, []).append(int(entry))
    total, count, stack = 0, 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, ()))
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
            count += 1
        except (OSError, ValueError, IndexError):
            pass
    return total, count


def run_child(code: str, python: str) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [python, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    peak = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            rss, count = tree_rss(proc.pid)
            if rss > peak[0]:
                peak[:] = [rss, count]

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
    return {**result, "wall": wall, "peak_mib": peak[0] / 2**20, "procs": peak[1]}


def learnerkit_rates(out_dir: str) -> dict:
    """Throughput, policy lag and dropped steps from a learnerkit run's metrics.csv."""
    with open(os.path.join(out_dir, "metrics.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    seconds = float(rows[-1]["time_total_s"])
    lags = [float(r["policy_lag_mean"]) for r in rows if r["policy_lag_mean"]]
    return {
        "sampled_per_s": int(rows[-1]["timesteps_total"]) / seconds,
        "trained_per_s": sum(int(r["num_env_steps_trained"]) for r in rows) / seconds,
        "lag": statistics.mean(lags) if lags else None,
        "dropped": int(rows[-1]["dropped_env_steps_total"]),
    }


def rllib_available(python: str) -> str | None:
    probe = subprocess.run([python, "-c", "import ray.rllib"], capture_output=True, text=True)
    if probe.returncode == 0:
        return None
    last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
    return f"RLlib not measured: `import ray.rllib` fails here ({last})"


COLUMNS = ("steps", "wall", "sampled_per_s", "trained_per_s", "peak_mib", "procs", "lag", "dropped")
HEADER = "  seed    steps  wall s  sampled/s  trained/s  peak MiB  procs   lag  dropped  reached"


def row(label: str, r: dict) -> str:
    lag = "-" if r.get("lag") is None else f"{r['lag']:.2f}"
    return (
        f"  {label:>4} {r['steps']:>8.0f} {r['wall']:>7.1f} {r['sampled_per_s']:>10.0f} "
        f"{r['trained_per_s']:>10.0f} {r['peak_mib']:>9.0f} {r['procs']:>6.0f} {lag:>5} "
        f"{r['dropped']:>8.0f}  {r['reached']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--rllib-seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--budget", type=int, default=1_000_000, help="env steps per run")
    parser.add_argument("--algorithm", choices=["impala", "appo"], default="impala")
    parser.add_argument("--num-env-runners", type=int, default=1)
    parser.add_argument("--num-envs-per-env-runner", type=int, default=16)
    parser.add_argument("--skip-rllib", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 30k steps")
    parser.add_argument("--json", metavar="OUT", help="write the raw results here")
    parser.add_argument(
        "--rllib-python",
        default=sys.executable,
        help="interpreter with ray[rllib] installed (RLlib pins an older gymnasium, so it may "
        "live in its own venv)",
    )
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.rllib_seeds, args.budget = args.seeds[:1], args.rllib_seeds[:1], 30_000

    contenders = {"learnerkit": (LEARNERKIT, sys.executable, args.seeds)}
    notes = []
    if not args.skip_rllib:
        reason = rllib_available(args.rllib_python)
        if reason is None:
            contenders["rllib"] = (RLLIB, args.rllib_python, args.rllib_seeds)
        else:
            notes.append(reason)
    setup = f"{args.num_env_runners} runner(s) x {args.num_envs_per_env_runner} envs"
    name = args.algorithm.upper()
    print(f"{name} CartPole-v1 to {TARGET:g}, {setup}, local learner, budget {args.budget}")
    params = {
        "algorithm": args.algorithm,
        "target": TARGET,
        "budget": args.budget,
        "runners": args.num_env_runners,
        "envs": args.num_envs_per_env_runner,
    }
    runs = []
    # Seeds outer, contenders inner: a load that comes and goes on the machine hits both.
    for seed in sorted({s for _, _, seeds in contenders.values() for s in seeds}):
        for name, (template, python, seeds) in contenders.items():
            if seed not in seeds:
                continue
            with tempfile.TemporaryDirectory(prefix="lk-bench-async-") as out:
                result = run_child(template.format(seed=seed, out=out, **params), python)
                if name == "learnerkit" and "error" not in result:
                    result.update(learnerkit_rates(out))
            runs.append({"contender": name, "seed": seed, **result})
            status = result.get("error") or f"{result['steps']} steps, {result['wall']:.1f} s"
            print(f"  {name} seed {seed}: {status}", flush=True)

    medians = {}
    for name in contenders:
        ok = [r for r in runs if r["contender"] == name and "error" not in r]
        print(f"\n{name}\n{HEADER}")
        for r in ok:
            print(row(str(r["seed"]), {**r, "reached": "yes" if r["reached"] else "NO"}))
        if ok:
            medians[name] = {
                k: statistics.median(r[k] for r in ok if r.get(k) is not None)
                for k in COLUMNS
                if any(r.get(k) is not None for r in ok)
            }
            reached = f"{sum(r['reached'] for r in ok)}/{len(ok)}"
            print(row("med", {**medians[name], "reached": reached}))
    ratios = {}
    if len(medians) == 2:
        lk, rl = medians["learnerkit"], medians["rllib"]
        ratios = {
            "wall": lk["wall"] / rl["wall"],
            "sampled_per_s": lk["sampled_per_s"] / rl["sampled_per_s"],
            "peak_mib": lk["peak_mib"] / rl["peak_mib"],
        }
        print("\nlearnerkit / RLlib, medians")
        print(f"  wall time      {ratios['wall']:.2f}  (target <= 0.5)")
        print(f"  sampled/s      {ratios['sampled_per_s']:.2f}  (target >= 1.5)")
        print(f"  peak memory    {ratios['peak_mib']:.2f}  (target <= 0.33)")
    for note in notes:
        print(note)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"args": vars(args), "runs": runs, "medians": medians, "ratios": ratios},
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
