"""Env runners as Ray actors: the ``num_env_runners >= 1`` implementation of `EnvRunners`.

Each actor steps its own environments (a gymnasium vector env, or PettingZoo parallel envs)
with its own copies of the modules and returns `Fragment`s. Module changes (``add_module``,
``remove_module``, ``set_policy_mapping``) are queued to every actor behind the fragment it
is sampling, and kept in the driver's spec, from which a restarted runner is built.

The driver either gathers one fragment from every runner (``sample``) or keeps
one sample request in flight per runner and takes whatever has finished (``poll``). It owns
the observation statistics all runners share (per module for a PettingZoo env): it merges
every fragment's increment into them and ships them with the weights. A runner whose actor
dies, or whose environment raises, is restarted with the current weights, up to
``max_restarts`` times in all.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import gymnasium
import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
from ray.util.placement_group import PlacementGroup, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from learnerkit._checkpoint import check_same_shapes
from learnerkit._distributed.env_runner_actor import RemoteRunner
from learnerkit._distributed.start import (
    PLACEMENT_TIMEOUT_ENV,
    ensure_ray,
    placement_timeout,
    reserve_bundles,
    ship_by_value,
)
from learnerkit._specs import ModuleSpec
from learnerkit.errors import ConfigError, EnvRunnerError, LearnerGroupError
from learnerkit.rollouts._contract import (
    EnvRunnerSpec,
    Fragment,
    ModuleWeights,
    Weights,
    spec_with_module,
)
from learnerkit.rollouts._env_ids import register_env_id
from learnerkit.rollouts._pettingzoo_envs import (
    PolicyMapping,
    make_parallel_env,
    parallel_env_factory,
)
from learnerkit.rollouts._sampling import ObsNormalizers
from learnerkit.rollouts.acting import numpy_copy_class

__all__ = ["RayEnvRunners"]

logger = logging.getLogger(__name__)


def _env_source(spec: EnvRunnerSpec) -> Any:
    """What the actors build their envs from, resolved in the driver so that a bad env is
    a ConfigError here rather than an actor that dies while starting: a PettingZoo env
    factory (one env is made and checked), or the gymnasium registration of the env id."""
    if spec.multi_agent:
        factory = parallel_env_factory(spec.env_id)
        make_parallel_env(spec.env_id, spec.env_kwargs, factory=factory).close()
        return factory
    env_id = spec.env_id
    module, _, name = env_id.rpartition(":")
    register_env_id(env_id)  # ALE/ and learnerkit/ ids
    try:
        if module:
            importlib.import_module(module)
        return gymnasium.spec(name)
    except (ImportError, gymnasium.error.Error) as exc:
        raise ConfigError(
            f"RayEnvRunners: cannot make environment {env_id!r}: {exc} (check the id against "
            "gymnasium.pprint_registry(), and import the package that registers it before "
            "building the runners)"
        ) from exc


def _describe(exc: BaseException) -> str:
    """The error itself, not Ray's wrapping: the environment's exception and message, or
    the last line of an actor death (Ray's reason)."""
    if isinstance(exc, RayTaskError):
        return f"{type(exc.cause).__name__}: {exc.cause}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


class RayEnvRunners:
    """``num_runners`` env-runner actors, each reserving ``num_cpus_per_runner`` CPUs."""

    def __init__(
        self,
        spec: EnvRunnerSpec,
        *,
        num_runners: int,
        num_cpus_per_runner: float = 1.0,
        max_restarts: int = 5,
        sample_timeout_s: float = 120.0,
        ray_address: str | None = None,
    ) -> None:
        if num_runners < 1 or num_cpus_per_runner <= 0:
            raise ConfigError(
                f"RayEnvRunners needs num_runners >= 1 and num_cpus_per_runner > 0, got "
                f"{num_runners} and {num_cpus_per_runner} (num_env_runners=0 samples locally)"
            )
        self.spec, self.num_runners = spec, num_runners
        self.max_restarts, self.sample_timeout_s = max_restarts, float(sample_timeout_s)
        self._cpus = float(num_cpus_per_runner)
        self._env_source = _env_source(spec)
        entry = getattr(self._env_source, "entry_point", self._env_source)
        specs = spec.module_specs.values()
        classes = [c for m in specs for c in (m.module_class, m.numpy_copy) if c is not None]
        ship_by_value([c for c in (entry, spec.policy_mapping, *classes) if callable(c)])
        self.actors: list[Any] = []
        # Where each runner runs (actor id, node id, pid, spaces), by index.
        self.info_by_index: dict[int, dict[str, Any]] = {}
        self.version, self.restarts, self.errors = 0, 0, 0
        self.last_error: str | None = None
        self._latest: dict[str, Weights] = {}  # the latest weights set, by module id
        self._weights: Any = None  # them, put once in the object store
        self._in_flight: dict[int, tuple[Any, float]] = {}  # index: (sample ref, issued at)
        self._pg: PlacementGroup | None = None
        try:
            ensure_ray(ray_address)
        except LearnerGroupError as exc:
            raise EnvRunnerError(str(exc)) from exc
        try:
            self._pg = reserve_bundles(
                {"CPU": self._cpus},
                num_runners,
                what="env runner",
                error=EnvRunnerError,
                # The run's Ray learners, started first, may hold the CPUs it lacks.
                settings="num_env_runners or num_cpus_per_env_runner (or the Ray learners' "
                "num_cpus_per_learner: learnerkit train --num-cpus-per-learner)",
            )
            self.actors = [None] * num_runners
            self._start(range(num_runners))
        except BaseException:
            self.close()
            raise
        self.observation_space = self.info_by_index[0]["observation_space"]
        self.action_space = self.info_by_index[0]["action_space"]
        self._normalizers = ObsNormalizers(
            spec.normalize_observations,
            by_module=spec.multi_agent,
            owner="group of env runners (set normalize_observations)",
        )
        for module_id, module_spec in spec.module_specs.items():
            self._normalizers.ensure(module_id, module_spec.observation_space.shape)

    # Actors ------------------------------------------------------------------------------
    def _start(self, indices: Iterable[int]) -> None:
        """Start runner actors, each in its bundle, and wait (bounded) until they run."""
        refs = {}
        for i in indices:
            options: dict[str, Any] = {"num_cpus": self._cpus}
            if self._pg is not None:  # None: in the placement group of a Tune trial
                options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                    self._pg, placement_group_bundle_index=i
                )
            self.actors[i] = RemoteRunner.options(**options).remote(self.spec, i, self._env_source)
            refs[i] = self.actors[i].info.remote()
        timeout = placement_timeout()
        for i, ref in refs.items():
            try:
                info = ray.get(ref, timeout=timeout)
            except RayActorError as exc:
                raise EnvRunnerError(f"env runner {i} failed to start: {_describe(exc)}") from exc
            except GetTimeoutError:
                raise EnvRunnerError(
                    f"env runner {i} did not start within {timeout:g} s ({PLACEMENT_TIMEOUT_ENV})"
                ) from None
            # Checked in the driver: weights a runner cannot load would fail there unseen.
            self._shapes: dict[str, dict[str, tuple[int, ...]]] = info.pop("weight_shapes")
            self.info_by_index[i] = info

    def _load(self, index: int) -> None:
        """Send runner ``index`` the latest weights and shared statistics (it gets them after
        the fragment it is sampling: actor tasks run in order)."""
        self.actors[index].load.remote(self._weights, self.version, self.get_state())

    def _restart(self, index: int, why: str) -> None:
        info = self.info_by_index.get(index, {})
        node, pid = info.get("node_id"), info.get("pid")
        logger.warning("env runner %d (node %s, pid %s) failed: %s", index, node, pid, why)
        if self.restarts >= self.max_restarts:
            raise EnvRunnerError(
                f"env runner {index} failed after {self.restarts} env-runner restarts, the "
                f"limit (max_env_runner_restarts={self.max_restarts}): {why}. Fix the cause, "
                "or raise max_env_runner_restarts to tolerate more failures"
            )
        self.restarts += 1
        ray.kill(self.actors[index], no_restart=True)
        self._start([index])
        self._load(index)

    # Requests ----------------------------------------------------------------------------
    def _request(self, index: int) -> None:
        self._in_flight[index] = (self.actors[index].sample.remote(), time.monotonic())

    def _wait(self, timeout: float) -> list[int]:
        """The runners whose request finished, waiting up to ``timeout`` s for the first
        (``ray.wait``, no spinning); an EnvRunnerError once a request has been waited for
        longer than ``sample_timeout_s``."""
        by_ref = {ref: i for i, (ref, _) in self._in_flight.items()}
        deadline = min(at for _, at in self._in_flight.values()) + self.sample_timeout_s
        left = deadline - time.monotonic()
        ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=max(0.0, min(timeout, left)))
        if ready:
            ready, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0)
            return sorted(by_ref[ref] for ref in ready)
        if timeout >= left:  # waited until the oldest request's deadline: none returned
            now = time.monotonic()
            stuck = {i: f"{now - at:.1f} s" for i, (_, at) in sorted(self._in_flight.items())}
            nodes = [self.info_by_index.get(i, {}).get("node_id") for i in stuck]
            raise EnvRunnerError(
                f"env runners {list(stuck)} (nodes {nodes}) returned no fragment within "
                f"sample_timeout_s={self.sample_timeout_s:g} s (waiting for {stuck}); raise "
                "sample_timeout_s if fragments take longer (a slow environment, a long "
                "rollout_fragment_length), or find out why the runners hang"
            )
        return []

    def _receive(self, index: int) -> Fragment | None:
        """Runner ``index``'s finished fragment, or None if it failed and was restarted."""
        ref, _ = self._in_flight.pop(index)
        try:
            fragment = ray.get(ref)
        except RayActorError as exc:
            self._restart(index, f"its actor died ({_describe(exc)})")
            return None
        except RayTaskError as exc:
            self.errors += 1
            self.last_error = _describe(exc)
            self._restart(index, f"its environment or policy raised {self.last_error}")
            return None
        self._normalizers.merge(fragment.obs_increment)
        return fragment

    # EnvRunners --------------------------------------------------------------------------
    def set_weights(self, weights: ModuleWeights, version: int) -> None:
        """Put the weights (by module id) once and queue them, with the shared statistics,
        for every runner; does not wait for fragments being sampled. Modules not in
        ``weights`` keep theirs."""
        unknown = sorted(set(weights) - set(self._shapes))
        if unknown:
            raise ConfigError(
                f"weights for modules {unknown}, which the env runners do not have (they have "
                f"{sorted(self._shapes)}): add them to the env runners first (add_module)"
            )
        for module_id, module_weights in weights.items():
            where = f"the env runners' module {module_id!r}"
            check_same_shapes(self._shapes[module_id], module_weights, where)
        self._latest.update({m: dict(w) for m, w in weights.items()})
        self._weights, self.version = ray.put(self._latest), version
        for i in range(self.num_runners):
            self._load(i)

    def add_module(
        self, module_id: str, module_spec: ModuleSpec, weights: Weights | None = None
    ) -> None:
        """Queue a new module for every runner (and for runners restarted later)."""
        spec = spec_with_module(self.spec, module_id, module_spec)
        layout = getattr(numpy_copy_class(module_spec), "weight_layout", None)
        if weights is not None and layout is not None:
            # Checked here: a runner refusing them would fail unseen.
            expected = layout(module_spec, spec.framework)
            check_same_shapes(expected, weights, f"the env runners' module {module_id!r}")
        self.spec = spec
        self._normalizers.ensure(module_id, module_spec.observation_space.shape)
        ship_by_value([c for c in (module_spec.module_class,) if callable(c)])
        for actor in self.actors:
            actor.add_module.remote(module_id, module_spec, weights)
        if weights is None:  # every runner builds it alike, from the spec's seed
            weights = ray.get(self.actors[0].module_weights.remote(module_id))
        self._shapes[module_id] = ray.get(self.actors[0].module_weight_shapes.remote(module_id))
        self._latest[module_id] = dict(weights)
        self._weights = ray.put(self._latest)

    def remove_module(self, module_id: str) -> None:
        """Queue the removal of a module on every runner."""
        self.spec = spec_with_module(self.spec, module_id, None)
        for actor in self.actors:
            actor.remove_module.remote(module_id)
        self._shapes.pop(module_id, None)
        self._normalizers.drop(module_id)
        if self._latest.pop(module_id, None) is not None:
            self._weights = ray.put(self._latest)

    def set_policy_mapping(self, mapping: PolicyMapping) -> None:
        """Queue a new policy mapping for every runner (see `EnvRunners`)."""
        if not self.spec.multi_agent:
            raise ConfigError(
                f"the gymnasium env {self.spec.env_id!r} has one agent: a policy mapping is "
                "only for PettingZoo envs ('pettingzoo:...')"
            )
        ship_by_value([mapping] if callable(mapping) else [])
        self.spec = attrs.evolve(self.spec, policy_mapping=mapping)
        for actor in self.actors:
            actor.set_policy_mapping.remote(mapping)

    def sample(self) -> list[Fragment]:
        """One fragment per runner, in runner order, sampled after the latest `set_weights`
        (fragments that `poll` left in flight are dropped: older weights)."""
        self._in_flight.clear()
        for i in range(self.num_runners):
            self._request(i)
        fragments: dict[int, Fragment] = {}
        while self._in_flight:
            for i in self._wait(self.sample_timeout_s):
                fragment = self._receive(i)
                if fragment is None:
                    self._request(i)  # sampled again by the restarted runner
                else:
                    fragments[i] = fragment
        return [fragments[i] for i in range(self.num_runners)]

    def poll(self, timeout: float) -> list[Fragment]:
        """Resume idle runners (the first poll, or after `sample`), wait up to
        ``timeout`` s for a fragment, return every finished one and ask their runners for
        the next at once."""
        for i in range(self.num_runners):
            if i not in self._in_flight:
                self._request(i)
        fragments = []
        for i in self._wait(timeout):
            fragment = self._receive(i)
            self._request(i)
            if fragment is not None:
                fragments.append(fragment)
        return fragments

    def get_state(self) -> dict[str, Any]:
        """The shared observation statistics, in the runners' format (`ObsNormalizers`)."""
        return self._normalizers.get_state()

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore `get_state`'s statistics, here and (queued) in every runner."""
        self._normalizers.set_state(state)
        if self._normalizers.enabled:
            for i in range(self.num_runners):
                self._load(i)

    def get_runner_states(self) -> list[dict[str, Any] | None]:
        """Each runner's generators and envs, as of the end of the fragment it is sampling
        now if any (actor calls run in order): that fragment is not in the checkpoint, so a
        resumed run never sees it. None for a runner that died (it restarts fresh)."""
        refs = [actor.runner_state.remote() for actor in self.actors]
        states: list[dict[str, Any] | None] = []
        for i, ref in enumerate(refs):
            try:
                state = ray.get(ref, timeout=self.sample_timeout_s)
            except (RayActorError, RayTaskError, GetTimeoutError) as exc:
                logger.warning("env runner %d: its state is not saved: %s", i, _describe(exc))
                state = None
            if state is not None and i in self._in_flight:
                # The fragment in flight is not in the checkpoint: a resumed runner's first
                # fragment does not continue the last one seen (a replay buffer flushes).
                state["fragments_sampled"] = 0
            states.append(state)
        return states

    def set_runner_states(self, states: list[Mapping[str, Any] | None]) -> list[str | None]:
        """Restore `get_runner_states`'s value, by index (before sampling); runners beyond
        the saved ones, and those saved as None, start fresh."""
        notes: list[str | None] = ["no state saved for this runner"] * self.num_runners
        refs = {
            i: self.actors[i].set_runner_state.remote(state)
            for i, state in enumerate(states[: self.num_runners])
            if state is not None
        }
        for i, ref in refs.items():
            try:
                notes[i] = ray.get(ref, timeout=self.sample_timeout_s)
            except (RayActorError, RayTaskError, GetTimeoutError) as exc:
                notes[i] = f"it failed to restore: {_describe(exc)}"
        return notes

    def metrics(self) -> dict[str, Any]:
        """Restarts and environment errors (the last one's text). A failed runner is
        restarted before sampling goes on, or training stops with an EnvRunnerError."""
        last = {"env_runner_last_error": self.last_error} if self.last_error else {}
        return {"env_runner_restarts": self.restarts, "env_runner_errors": self.errors, **last}

    def close(self) -> None:
        """Kill the actors and free their reservation; again, or after Ray, does nothing."""
        actors, pg = self.actors, self._pg
        self.actors, self._pg, self._in_flight = [], None, {}
        if not ray.is_initialized():  # Ray went first: the actors went with it
            return
        for actor in filter(None, actors):  # None: never started
            ray.kill(actor, no_restart=True)
        if pg is not None:
            remove_placement_group(pg)
