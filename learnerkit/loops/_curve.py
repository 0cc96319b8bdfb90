"""Draw a run's learning curve: ``python _curve.py METRICS_CSV OUT_PNG STOP_REWARD``, or
``python _curve.py --serve`` to draw one curve per line of ``[METRICS_CSV, OUT_PNG,
STOP_REWARD]`` JSON read from stdin, answering each with a line (``ok`` or ``error: ...``).

Run by ``RunOutput`` in a child interpreter, so that matplotlib is never imported by the
training process (it would add ~35 MB to its peak memory). The child is started with the
run and imports matplotlib while the run trains (the training process keeps torch to one
thread, so a second core is usually idle), so that drawing at the end takes milliseconds,
not the half second of starting an interpreter and importing matplotlib then.
"""

from __future__ import annotations

import csv
import json
import sys

# The CSV columns of per-agent mean returns (multi-agent runs); _run_output imports it.
AGENT_RETURN_PREFIX = "agent_return_mean/"


def main(metrics: str, out: str, stop: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("episode_return_mean")]
    stop_reward = None if stop == "None" else float(stop)
    steps = [int(r["timesteps_total"]) for r in rows]
    returns = [float(r["episode_return_mean"]) for r in rows]
    agents = [k for k in rows[-1] if k.startswith(AGENT_RETURN_PREFIX)]
    fig, ax = plt.subplots(figsize=(7, 4))
    label = "team return" if agents else "mean return"
    ax.plot(steps, returns, label=f"{label} (last 100 episodes)")
    for key in agents:  # multi-agent: each agent's mean return too
        points = [(int(r["timesteps_total"]), float(r[key])) for r in rows if r.get(key)]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, linewidth=1, label=key[len(AGENT_RETURN_PREFIX) :])
    if stop_reward is not None:
        ax.axhline(stop_reward, color="grey", linestyle="--", label=f"stop at {stop_reward:g}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def serve() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # imported now, while the run trains

    for line in sys.stdin:
        try:
            main(*json.loads(line))
            answer = "ok"
        except Exception as exc:  # reported to the training process, which raises it
            answer = f"error: {type(exc).__name__}: {exc}".replace("\n", " ")
        print(answer, flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        main(*sys.argv[1:4])
