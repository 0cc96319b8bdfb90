"""What a training run writes: metrics CSV, TensorBoard events, a learning curve, a summary,
and the live progress display."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from learnerkit._checkpoint import write_json_atomic
from learnerkit.errors import ConfigError
from learnerkit.loops._curve import AGENT_RETURN_PREFIX as AGENT_RETURN_PREFIX

METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CURVE_FILE = "learning_curve.png"
TENSORBOARD_DIR = "tensorboard"


def read_config_file(path: str) -> dict[str, Any]:
    """Hyperparameters from a JSON or TOML file (a flat table; ``model_config`` nested)."""
    text = Path(path).read_text()
    try:
        if path.endswith(".toml"):
            import tomllib

            return tomllib.loads(text)
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc


class _Progress:
    """A rich progress bar showing iteration, env steps, mean return and steps/s."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = enabled
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]iter {task.fields[iteration]}"),
                BarColumn(),
                TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
                TextColumn("return {task.fields[ret]}"),
                TextColumn("{task.fields[sps]} steps/s"),
                TimeElapsedColumn(),
            )
            self._task = self._progress.add_task(
                "train", total=total, iteration=0, ret="-", sps="-"
            )

    def __enter__(self) -> _Progress:
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self._progress.stop()

    def advance_to(self, steps: int, iteration: int, ret: float | None, sps: float) -> None:
        if self.enabled:
            self._progress.update(
                self._task,
                completed=steps,
                iteration=iteration,
                ret="-" if ret is None else f"{ret:.1f}",
                sps=f"{sps:,.0f}",
            )


class RunOutput:
    """The files of one run directory. Rows are appended, so a resumed run continues them."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._csv_file = None
        self._writer: Any = None
        self._tb: Any = None
        self._columns: list[str] | None = None
        self._curve: _CurveDrawer | None = None

    def start(self, metadata: Mapping[str, Any], *, resume: bool) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        metrics = self.dir / METRICS_FILE
        if not resume and metrics.exists():
            metrics.unlink()  # a fresh run in an old directory starts a fresh table
        if resume and metrics.exists():
            with metrics.open(newline="") as f:
                self._columns = next(csv.reader(f), None)
        (self.dir / "config.json").write_text(json.dumps(metadata, indent=2, default=str))
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(str(self.dir / TENSORBOARD_DIR))
        self._curve = _CurveDrawer()

    def log(self, row: Mapping[str, Any]) -> None:
        if self._columns is None:
            self._columns = list(row)
        new = [name for name in row if name not in self._columns]
        if new:
            # A column that appears later (an agent's first finished episode, a module added
            # while training) widens the table: the rows so far are rewritten under it.
            self._widen(new)
        if self._writer is None:
            path = self.dir / METRICS_FILE
            new = not path.exists() or path.stat().st_size == 0
            self._csv_file = path.open("a", newline="")
            self._writer = csv.DictWriter(self._csv_file, self._columns, extrasaction="ignore")
            if new:
                self._writer.writeheader()
        self._writer.writerow(row)
        self._csv_file.flush()
        step = int(row["timesteps_total"])
        for name, value in row.items():
            if isinstance(value, (int, float)) and value is not None and math.isfinite(value):
                self._tb.add_scalar(name, value, step)

    def _widen(self, new: list[str]) -> None:
        if self._csv_file is not None:
            self._csv_file.close()
        self._csv_file = self._writer = None
        self._columns = [*self._columns, *new]
        path = self.dir / METRICS_FILE
        if not path.exists():
            return
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, self._columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    @contextlib.contextmanager
    def progress(self, total: int, *, enabled: bool) -> Iterator[_Progress]:
        with _Progress(total, enabled) as bar:
            yield bar

    def plot_curve(self, stop_reward: float | None) -> Path | None:
        """Mean return (last 100 episodes) against env steps, as a PNG."""
        path = self.dir / METRICS_FILE
        if not path.exists():
            return None
        with path.open(newline="") as f:
            if not any(r.get("episode_return_mean") for r in csv.DictReader(f)):
                return None
        out = self.dir / CURVE_FILE
        drawer = self._curve or _CurveDrawer()
        try:
            drawer.draw(path, out, stop_reward)
        finally:
            if drawer is not self._curve:
                drawer.close()
        return out

    def finish(self, summary: Mapping[str, Any]) -> None:
        write_json_atomic(self.dir / SUMMARY_FILE, summary)
        if self._csv_file is not None:
            self._csv_file.close()
        if self._tb is not None:
            self._tb.close()
        self.close()

    def close(self) -> None:
        """Stop the curve drawer (a run that failed before its end has one waiting)."""
        if self._curve is not None:
            self._curve.close()
            self._curve = None


class _CurveDrawer:
    """A child interpreter that draws learning curves (``_curve.py --serve``).

    Started with the run, so it imports matplotlib while the run trains: importing it in
    the training process would add ~35 MB to its peak memory (issue 10), and starting a
    child only at the end would add half a second to every run's wall time.
    """

    def __init__(self) -> None:
        script = Path(__file__).with_name("_curve.py")
        # stderr to a file, not a pipe nobody reads while the run trains (a full pipe would
        # block the child); read back when a drawing fails.
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._child = subprocess.Popen(
            [sys.executable, str(script), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )

    def draw(self, metrics: Path, out: Path, stop_reward: float | None) -> None:
        request = json.dumps([str(metrics), str(out), repr(stop_reward)])
        try:
            self._child.stdin.write(request + "\n")
            self._child.stdin.flush()
            answer = self._child.stdout.readline().strip()
        except OSError:  # the child is gone (BrokenPipeError): say why below
            answer = ""
        if answer == "ok":
            return
        if not answer:  # it died: its stderr says why
            self._stderr.seek(0)
            lines = self._stderr.read().strip().splitlines()
            answer = lines[-1] if lines else f"exit code {self._child.poll()}"
        raise RuntimeError(f"drawing {out} failed: {answer}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._child.stdin.close()
        try:
            self._child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        self._child.stdout.close()
        self._stderr.close()


def combine_results(results: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Each learner statistic over the updates that finished: running totals (``*_total``)
    as of the last one, counts (``num_*``) summed, everything else averaged."""
    if not results:
        return {}
    merged: dict[str, Any] = {}
    for key in results[0]:
        values = [r[key] for r in results if key in r]
        if not all(isinstance(v, (int, float, np.number)) for v in values):
            continue
        if key.endswith("_total"):
            merged[key] = float(values[-1])
        elif key.startswith("num_"):
            merged[key] = float(np.sum(values))
        else:
            merged[key] = float(np.mean(values))
    return merged
