"""A run's learning curve: mean return against env steps, drawn from its ``metrics.csv``
into a PNG at the end of the run; and several runs' on one plot (``learnerkit tune``).

Drawn in the training process, after the output child that writes TensorBoard events has
exited (issue 18): a second interpreter holding matplotlib held its own numpy and Python
too, ~73 MiB beside the run for all of it (the largest part of DQN's peak over SB3's), where
matplotlib in the training process, which has numpy already, adds ~35 MiB at the end only.
The figure is drawn through Agg's canvas, not pyplot, so a user's matplotlib backend and
open figures are left as they are.
"""

from __future__ import annotations

import csv
from pathlib import Path

# The CSV columns of per-agent mean returns (multi-agent runs).
AGENT_RETURN_PREFIX = "agent_return_mean/"


def draw_curve(metrics: Path, out: Path, stop_reward: float | None) -> None:
    """Draw ``metrics``' ``episode_return_mean`` (and each agent's, multi-agent) against
    ``timesteps_total`` into ``out``, with ``stop_reward`` as a dashed line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with open(metrics, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("episode_return_mean")]
    steps = [int(r["timesteps_total"]) for r in rows]
    returns = [float(r["episode_return_mean"]) for r in rows]
    agents = [k for k in rows[-1] if k.startswith(AGENT_RETURN_PREFIX)]
    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
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


def draw_curves(curves: list[tuple[str, str]], out: str, stop_reward: float | None) -> None:
    """Several runs' mean returns against env steps on one plot (``learnerkit tune``'s
    trials): ``curves`` is ``(label, CSV)`` pairs, each CSV with ``metrics.csv``'s
    ``timesteps_total`` and ``episode_return_mean`` columns. Called in-process."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
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
