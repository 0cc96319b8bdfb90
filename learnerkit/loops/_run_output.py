"""What a training run writes: metrics CSV, TensorBoard events, a learning curve, a summary,
and the live progress display."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from learnerkit._checkpoint import write_json_atomic
from learnerkit.errors import ConfigError
from learnerkit.loops._learning_curve import AGENT_RETURN_PREFIX as AGENT_RETURN_PREFIX
from learnerkit.loops._learning_curve import draw_curve

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CURVE_FILE = "learning_curve.png"
TENSORBOARD_DIR = "tensorboard"


def read_config_file(path: str, algorithm: str | None = None) -> dict[str, Any]:
    """Hyperparameters from a JSON or TOML file (a flat table; ``model_config`` nested), or
    from a run's own ``config.json`` (its hyperparameters and model settings, for
    ``algorithm`` if given: a run of another algorithm is refused)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror or exc}; give the path of an "
            "existing .json or .toml file (a run writes one as config.json)"
        ) from exc
    try:
        if path.endswith(".toml"):
            import tomllib

            return tomllib.loads(text)
        config = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(
            f"config file {path} holds a {type(config).__name__}; it must hold one table "
            "(a JSON object) of hyperparameter names to values"
        )
    if "algorithm" in config and isinstance(config.get("hyperparameters"), dict):
        return _settings_of_a_run(config, path, algorithm)
    return config


def _settings_of_a_run(record: Mapping[str, Any], path: str, algorithm: str | None) -> dict:
    """What a run's ``config.json`` gives another run: its hyperparameters, model config and
    per-module settings. Its env, framework and seed are the new run's to choose (flags)."""
    if algorithm is not None and record["algorithm"] != algorithm:
        raise ConfigError(
            f"config file {path} records a run of {record['algorithm']!r}, whose "
            f"hyperparameters {algorithm!r} does not take: train {record['algorithm']} with "
            f"it, or give a file of {algorithm}'s hyperparameters"
        )
    table = dict(record["hyperparameters"])
    for key in ("model_config", "module_hyperparameters", "modules_to_train"):
        if record.get(key):
            table[key] = record[key]
    return table


# Settings of the run (TrainConfig), not hyperparameters, with the flag of `learnerkit
# train` and `learnerkit tune` that sets each: a config file cannot hold them.
RUN_FLAGS = {
    "stop_timesteps": "--stop-timesteps",
    "stop_reward": "--stop-reward",
    "framework": "--framework",
    "env_id": "--env",
    "env": "--env",
    "num_learners": "--num-learners",
    "num_cpus_per_learner": "--num-cpus-per-learner",
    "num_gpus_per_learner": "--num-gpus-per-learner",
    "ray_address": "--ray-address",
}


def refuse_run_settings(values: dict, path: str) -> None:
    """A config file holds hyperparameters (and model_config...): name the flag for a
    setting of the run found there, which the hyperparameters' error would only call
    unknown."""
    found = [name for name in values if name in RUN_FLAGS]
    if found:
        flags = ", ".join(f"{name}: {RUN_FLAGS[name]}" for name in found)
        raise ConfigError(
            f"config file {path} sets {found}, which are settings of the run, not "
            f"hyperparameters: give them on the command line ({flags})"
        )


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
        self._columns: list[str] | None = None
        self._child: _OutputChild | None = None

    def start(self, metadata: Mapping[str, Any], *, resume: bool) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        metrics = self.dir / METRICS_FILE
        if not resume and metrics.exists():
            metrics.unlink()  # a fresh run in an old directory starts a fresh table
        if resume and metrics.exists():
            with metrics.open(newline="") as f:
                self._columns = next(csv.reader(f), None)
        (self.dir / "config.json").write_text(json.dumps(metadata, indent=2, default=str))
        self._child = _OutputChild(self.dir / TENSORBOARD_DIR)

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
        scalars = {
            name: float(value)
            for name, value in row.items()
            if isinstance(value, (int, float)) and math.isfinite(value)
        }
        if self._child is not None:
            self._child.add_scalars(int(row["timesteps_total"]), scalars)

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
        """Mean return (last 100 episodes) against env steps, as a PNG. Ends the TensorBoard
        events first (the output child exits, so matplotlib never shares the run's memory
        with it): call it once the last row is logged."""
        self.close()
        path = self.dir / METRICS_FILE
        if not path.exists():
            return None
        with path.open(newline="") as f:
            if not any(r.get("episode_return_mean") for r in csv.DictReader(f)):
                return None
        out = self.dir / CURVE_FILE
        draw_curve(path, out, stop_reward)
        return out

    def finish(self, summary: Mapping[str, Any]) -> None:
        write_json_atomic(self.dir / SUMMARY_FILE, summary)
        if self._csv_file is not None:
            self._csv_file.close()
        self.close()

    def close(self) -> None:
        """Let the output child write what it was sent and stop (a run that failed before
        its end has one too)."""
        if self._child is not None:
            self._child.close()
            self._child = None


class _OutputChild:
    """The child interpreter that writes TensorBoard events (``_output_child.py``), so the
    training process neither imports tensorboardX nor spends time building records (issue
    10). Scalars are sent without waiting for an answer. If the child dies, the run goes on
    (``metrics.csv`` holds every row) with one warning naming the child's last words.
    """

    def __init__(self, tensorboard_dir: Path) -> None:
        script = Path(__file__).with_name("_output_child.py")
        # stderr to a file, not a pipe nobody reads while the run trains (a full pipe would
        # block the child); read back when the child fails.
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._child = subprocess.Popen(
            [sys.executable, str(script), str(tensorboard_dir)],
            stdin=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._warned = False

    def add_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        try:
            self._send({"scalars": [step, dict(scalars)]})
        except OSError:  # the child is gone (BrokenPipeError)
            if not self._warned:
                self._warned = True
                logger.warning(
                    "the TensorBoard writer (a child process) stopped: %s; TensorBoard events "
                    "end here, metrics.csv keeps every row",
                    self._last_words(),
                )

    def _send(self, request: Mapping[str, Any]) -> None:
        self._child.stdin.write(json.dumps(request) + "\n")
        self._child.stdin.flush()

    def _last_words(self) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().strip().splitlines()
        return lines[-1] if lines else f"exit code {self._child.poll()}"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._child.stdin.close()
        try:
            self._child.wait(timeout=30)  # it writes what it was sent, then exits
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        self._stderr.close()
