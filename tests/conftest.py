"""Shared fixtures: a fresh plugin state per test, both frameworks, small plugin packages
installed from ``tests/plugin_packages`` into temporary directories, and batch makers."""

from __future__ import annotations

import os

# One thread per framework and for numpy's BLAS, set before any of them is imported (child
# processes inherit it): the tests' models and batches are tiny, and on a busy 2-core machine
# spinning thread pools made the fast suite about twice as slow (a 3136x512 QR, a conv
# module's orthogonal init, took 1.2 s with OpenBLAS' threads, 0.2 s with one). A variable
# already set wins.
for _variable in (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
):
    os.environ.setdefault(_variable, "1")
# TensorFlow's oneDNN kernels (on by default on x86) do not pay off on the tests' tiny models:
# without them a TF PPO learner's first update (its trace included) took 0.5-0.6 s instead of
# 0.6-0.8 s (two measurements; later updates about the same), and the fast suite's TF tests
# ~7% less time. Results agree to float rounding (TensorFlow's own notice); learnerkit's code
# is the same either way.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# Ray starts its workers (learner and env runner actors) at nice 15: beside another xdist
# worker at nice 0 on a 2-core machine they would wait for it. Equal shares instead.
os.environ.setdefault("RAY_worker_niceness", "0")

import gc
import importlib
import importlib.util
import shutil
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from filelock import FileLock

import learnerkit
from learnerkit import Algorithm, Columns, Hyperparameters
from learnerkit.testing import reset_plugins

PLUGIN_PACKAGES = Path(__file__).parent / "plugin_packages"
REPO_ROOT = Path(__file__).parent.parent
FRAMEWORKS = ["torch", "tf"]
# Switch plugins off (docs/concepts/index.md, "Plugins"): some by name, or every entry point.
DISABLE_PLUGIN_VARIABLES = ("LEARNERKIT_DISABLE_PLUGINS", "LEARNERKIT_DISABLE_PLUGIN_AUTOLOAD")

CARTPOLE_OBS = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
TWO_ACTIONS = gym.spaces.Discrete(2)
BOX_ACTIONS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)


def pytest_sessionstart(session: pytest.Session) -> None:
    """learnerkit's own training loops come from its installed metadata: one installed
    before they were plugins (issue 18) has none, and nearly every training test would fail
    for that one reason."""
    eps = metadata.entry_points(group=learnerkit.LOOP_ENTRY_POINT_GROUP)
    if not any(ep.dist is not None and ep.dist.name == "learnerkit" for ep in eps):
        pytest.exit(
            "learnerkit's installed metadata has no training-loop entry points (it predates "
            "them): reinstall learnerkit (`make`, or `pip install -e .`) and run the tests "
            "again",
            returncode=4,
        )


@pytest.fixture(autouse=True)
def fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts with no plugin registered in code, nothing cached, and no plugin
    switched off by the environment (the variables the docs document); whatever it
    registers is gone afterwards."""
    for variable in DISABLE_PLUGIN_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    reset_plugins()
    yield
    reset_plugins()


# Ray --------------------------------------------------------------------------------------
# Starting Ray takes seconds, so the tests share one session per process: the first test
# that needs Ray starts it (through learnerkit, as a user's program would) and it lasts
# until the tests end (under xdist, until the worker's last file with Ray tests). Tests that
# check how a run starts Ray (marked ``ray_first``) run first among them, so that the
# session they see started is the one the others then share; each still ends any session
# first (end_ray_session), so that it holds when run alone. The chaos and two-node cluster
# tests, which replace the session with a Ray of their own, run last. Run in one process,
# the Ray tests come after all the others, and any other test that starts Ray fails. Under
# pytest-xdist (``make test``: ``-n logical --dist loadfile``) each file runs whole on one
# worker, so that what its tests share (a module-scoped Ray learner group, a trained run,
# the contract kit's run of a class) is built once; files are handed out in the order of
# their first test, and the Ray tests come first, then the slow ones, so that a worker
# starts its session once and a long file does not end the run on one worker while the other
# waits. (xdist's ``loadgroup`` would put a file's Ray tests and its others apart, but
# pytest 9's test ids do not take the group that xdist 3.8 adds: its groups are silently
# ignored.)
def ray_is_up() -> bool:
    ray = sys.modules.get("ray")  # never imported here: most tests do not use Ray
    return ray is not None and ray.is_initialized()


def end_ray_session() -> None:
    """No Ray session in this process, for a test that checks how a run starts one."""
    if ray_is_up():
        sys.modules["ray"].shutdown()


def ray_node() -> str | None:
    """The Ray session this process is connected to (its node), None without one."""
    return sys.modules["ray"].get_runtime_context().get_node_id() if ray_is_up() else None


@pytest.fixture(autouse=True, scope="session")
def ray_session_ends_with_the_tests() -> Iterator[None]:
    yield
    end_ray_session()


@pytest.fixture(autouse=True)
def only_ray_tests_start_ray(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that starts Ray is marked ``ray`` (``make test-fast`` leaves those out): any
    other test that leaves a session it did not find (a new one, or one where there was
    none) fails. It may find one a Ray test of its worker left, and leaves it be."""
    if request.node.get_closest_marker("ray") is not None:
        yield
        return
    before = ray_node()
    yield
    after = ray_node()
    if after is not None and after != before:
        end_ray_session()
        pytest.fail(f"{request.node.nodeid} started Ray: mark it @pytest.mark.ray")


# Files with Ray tests: under xdist, a worker's Ray session ends once it moves on to a file
# without any (every such file comes after all files with Ray tests), rather than idling on
# through the rest of its tests (~4% of a core for Ray's own processes).
RAY_FILES: set[Path] = set()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield  # the item's fixtures, and those of its file when the next item is in another
    if (
        nextitem is not None
        and item.path in RAY_FILES
        and nextitem.path not in RAY_FILES
        and "PYTEST_XDIST_WORKER" in os.environ
    ):
        end_ray_session()


# Fixtures that replace the shared session with a Ray of their own (and end it after).
OWN_RAY_FIXTURES = frozenset({"chaos", "two_node_cluster"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Ray tests after the others (a stable sort: file order otherwise), those marked
    ``ray_first`` first, and last those that replace the session with a Ray of their own
    (the chaos harness's, the two-node cluster), so that no Ray test after them starts the
    shared session again. Under xdist the Ray tests come first instead, then the slow ones
    (``loadfile`` hands out files in the order of their first test)."""
    under_xdist = "PYTEST_XDIST_WORKER" in os.environ

    def order(item: pytest.Item) -> tuple[bool, ...]:
        is_ray = item.get_closest_marker("ray") is not None
        is_slow = item.get_closest_marker("slow") is not None
        return (
            is_ray != under_xdist,
            under_xdist and not is_slow,
            is_ray and item.get_closest_marker("ray_first") is None,
            is_ray and not OWN_RAY_FIXTURES.isdisjoint(getattr(item, "fixturenames", ())),
        )

    items.sort(key=order)
    RAY_FILES.update(item.path for item in items if item.get_closest_marker("ray"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fewer, cheaper cyclic garbage collections. What is alive after collection (the test
    items, torch, TensorFlow and the other modules they imported) lives to the end: frozen,
    no full collection walks it again. Python's default thresholds collect after every 700
    new objects, and tracing a TensorFlow step makes thousands. A fast-suite worker spent
    ~2.9 s collecting (2.3 s in 13 full collections), ~1.5 s with both changes; the suite
    took 0.7-1.0 s less (two pairs of runs, back to back). What the tests create is still
    collected, only in larger batches."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """An xdist worker ends here, once it has sent its results (``pytest_sessionfinish``),
    without the interpreter's teardown: with TensorFlow and torch loaded that took ~3.5 s
    per worker, and the run waited for it. Its Ray session ended with the tests
    (``ray_session_ends_with_the_tests``); nothing else is left to write."""
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(workeroutput.get("exitstatus", 0)))


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    """Runs the test once per framework."""
    return request.param


def make_plugin(
    name: str,
    *,
    hyperparameters: type[Hyperparameters] = Hyperparameters,
    frameworks: tuple[str, ...] = ("torch", "tf"),
    required_columns: tuple[str, ...] = (),
    initial_state: Callable[[Any], dict] | None = None,
    training_loop: str | None = None,
    column_specs: dict[str, Any] | None = None,
    reads_loss_mask: bool = False,
    **hooks: Callable,
) -> types.ModuleType:
    """A plugin module made in a test: ``hooks`` are plain functions, marked here."""
    module = types.ModuleType(f"test_plugin_{name}")
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, learnerkit.hookimpl(fn))
    module.algorithm = Algorithm(
        name=name,
        hyperparameters=hyperparameters,
        frameworks=frameworks,
        required_columns=required_columns,
        initial_state=initial_state,
        training_loop=training_loop,
        column_specs=column_specs or {},
        reads_loss_mask=reads_loss_mask,
    )
    return module


def bc_loss(module, batch, fwd_out, ops):
    """Behaviour cloning, as test algorithms' default loss."""
    dist = module.action_dist(fwd_out[Columns.ACTION_DIST_INPUTS])
    loss = -ops.mean(dist.logp(batch[Columns.ACTIONS]))
    return {"total_loss": loss, "policy_loss": loss}


@pytest.fixture
def register() -> Iterator[Callable[..., Algorithm]]:
    """``register(plugin)`` registers it for this test only."""
    names: list[str] = []

    def _register(plugin: Any, **kwargs: Any) -> Algorithm:
        algorithm = learnerkit.register_algorithm(plugin, **kwargs)
        names.append(algorithm.name)
        return algorithm

    yield _register
    for name in names:
        learnerkit.unregister_algorithm(name)


def random_batch(
    n: int,
    observation_space: Any = CARTPOLE_OBS,
    action_space: Any = TWO_ACTIONS,
    seed: int = 0,
) -> learnerkit.SampleBatch:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, *observation_space.shape)).astype(np.float32)
    if hasattr(action_space, "n"):
        actions = rng.integers(0, action_space.n, size=n)
    else:
        actions = rng.uniform(-1, 1, size=(n, *action_space.shape)).astype(np.float32)
    return learnerkit.SampleBatch(
        {
            Columns.OBS: obs,
            Columns.ACTIONS: actions,
            Columns.REWARDS: rng.normal(size=n).astype(np.float32),
        }
    )


# Third-party plugin packages, pip-installed into temporary directories ------------------
def pip_install(source: Path, target: Path, build_dir: Path) -> subprocess.Popen:
    """Start ``pip install`` of ``source`` into ``target`` (the caller waits for it)."""
    # Build from a copy so that setuptools leaves no build/ or egg-info in the source tree.
    copy = build_dir / source.name
    shutil.copytree(source, copy)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(copy),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="session")
def plugin_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each package of tests/plugin_packages installed alone into its own directory (the
    installs run side by side: each is a pip process of 1-2 s of CPU). Under pytest-xdist the
    workers share one set: the first to need it installs it while the others wait; the
    tests only read these directories."""
    basetemp = tmp_path_factory.getbasetemp()
    # Under xdist each worker's basetemp lies in the run's own directory, shared by them all.
    shared = basetemp.parent if "PYTEST_XDIST_WORKER" in os.environ else basetemp
    root = shared / "plugin_packages"
    sources = [s for s in sorted(PLUGIN_PACKAGES.iterdir()) if (s / "pyproject.toml").is_file()]
    dirs = {source.name: root / "site" / source.name for source in sources}
    with FileLock(str(shared / "plugin_packages.lock")):
        if (root / "installed").is_file():
            return dirs
        shutil.rmtree(root, ignore_errors=True)  # what a failed install left
        installs = {s.name: pip_install(s, dirs[s.name], root / "build") for s in sources}
        for name, proc in installs.items():
            output, _ = proc.communicate()
            if proc.returncode:
                pytest.fail(f"pip could not install tests/plugin_packages/{name}:\n{output}")
        (root / "installed").touch()
    return dirs


@pytest.fixture
def use_plugin_packages(
    plugin_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., None]:
    """``use_plugin_packages("learnerkit-echo", ...)`` makes them importable in-process, as
    if pip-installed, for this test only."""

    def _use(*names: str) -> None:
        for name in names:
            monkeypatch.syspath_prepend(str(plugin_dirs[name]))
        importlib.invalidate_caches()
        reset_plugins()

    return _use


def learner_processes(group: learnerkit.LearnerGroup) -> list[tuple[str, int]]:
    """(Ray actor id, process id) of each learner of a group of Ray learners, by rank: a
    test kills a learner by its process id, as the machine would (out of memory, say)."""
    import ray

    return group.foreach_learner(lambda _: (ray.get_runtime_context().get_actor_id(), os.getpid()))


def run_learnerkit(
    *args: str, plugin_dirs: list[Path] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m learnerkit ARGS`` in a fresh interpreter, with ``plugin_dirs`` on its path."""
    environ = {k: v for k, v in os.environ.items() if k not in DISABLE_PLUGIN_VARIABLES}
    environ["PYTHONPATH"] = os.pathsep.join(
        [*map(str, plugin_dirs), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=REPO_ROOT,
        timeout=120,
    )
