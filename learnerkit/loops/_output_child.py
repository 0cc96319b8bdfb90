"""The child interpreter that writes a run's TensorBoard events and draws its learning
curve: ``python _output_child.py TENSORBOARD_DIR`` (``""``: no events), reading JSON lines
from stdin:

- ``{"scalars": [STEP, {NAME: VALUE, ...}]}``: one metrics row, added to the TensorBoard
  events (no answer);
- ``{"curve": [METRICS_CSV, OUT_PNG, STOP_REWARD]}``: draw the curve, answer ``ok`` or
  ``error: ...`` on a line.

Started by ``RunOutput`` with the run, so that the training process imports neither
matplotlib (~35 MB of peak memory) nor tensorboardX and protobuf (~5 MB), and spends no time
building TensorBoard records (~65 us a scalar, a few hundred a row) or importing matplotlib
at the end: the child does it alongside, usually on a core the training process leaves idle
(it keeps torch to one thread).
"""

from __future__ import annotations

import csv
import json
import sys

# The CSV columns of per-agent mean returns (multi-agent runs); _run_output imports it.
AGENT_RETURN_PREFIX = "agent_return_mean/"


def draw_curve(metrics: str, out: str, stop: str) -> None:
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


def draw_curves(curves: list[tuple[str, str]], out: str, stop_reward: float | None) -> None:
    """Several runs' mean returns against env steps on one plot (``learnerkit tune``'s
    trials): ``curves`` is ``(label, CSV)`` pairs, each CSV with ``metrics.csv``'s
    ``timesteps_total`` and ``episode_return_mean`` columns. Called in-process."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, metrics in curves:
        with open(metrics, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("episode_return_mean")]
        if rows:
            steps = [int(float(r["timesteps_total"])) for r in rows]
            ax.plot(steps, [float(r["episode_return_mean"]) for r in rows], label=label)
    if stop_reward is not None:
        ax.axhline(stop_reward, color="grey", linestyle="--", label=f"stop at {stop_reward:g}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("mean return (last 100 episodes)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def serve(tensorboard_dir: str) -> None:
    # tensorboardX imports torch if it can (for tensor arguments; this child gets floats):
    # ~0.75 s of CPU and ~200 MB, beside a training process starting up on the other core.
    # A None entry in sys.modules makes `import torch` fail, which tensorboardX allows for.
    sys.modules.setdefault("torch", None)
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(tensorboard_dir) if tensorboard_dir else None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # imported now, while the run trains

        for line in sys.stdin:
            request = json.loads(line)
            if "scalars" in request:  # never answered, with or without a writer
                if writer is not None:
                    step, values = request["scalars"]
                    for name, value in values.items():
                        writer.add_scalar(name, value, step)
                continue
            if writer is not None:
                writer.flush()  # a curve is drawn at the end of a run: its events are on disk
            try:
                draw_curve(*request["curve"])
                answer = "ok"
            except Exception as exc:  # reported to the training process, which raises it
                answer = f"error: {type(exc).__name__}: {exc}".replace("\n", " ")
            print(answer, flush=True)
    finally:
        if writer is not None:
            writer.close()


if __name__ == "__main__":
    serve(sys.argv[1])
