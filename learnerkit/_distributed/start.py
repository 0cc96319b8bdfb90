"""Starting the learners' Ray side: the Ray session, the code the actors need, and the
reservation of their resources (a placement group, one bundle per learner)."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import ray
from ray.exceptions import GetTimeoutError
from ray.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    placement_group,
    remove_placement_group,
)
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from learnerkit._specs import ScalingConfig
from learnerkit.errors import LearnerGroupError

PLACEMENT_TIMEOUT_ENV = "LEARNERKIT_PLACEMENT_TIMEOUT_S"
# Seconds to wait for Ray to reserve the learners' resources before calling it a shortfall.
DEFAULT_PLACEMENT_TIMEOUT_S = 60.0
# Object store of a Ray started here: batches and states of small models need little.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2
# Ray's GCS keeps a record of every task (each runner's sample and each learner update is
# one) for its state API, up to 100,000 by default: in a long run it grew by ~20 MiB a
# minute on a 2-core machine (bench/soak_impala.py). A local Ray of a run keeps the last
# 10,000, enough to inspect a live run with ``ray list tasks``.
LOCAL_RAY_SYSTEM_CONFIG = {"task_events_max_num_task_in_gcs": 10_000}


def ensure_ray(address: str | None) -> None:
    """Join the Ray cluster at ``address`` (else ``RAY_ADDRESS``), or start a local Ray of
    this process's own; nothing if Ray is up."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address not in ("auto", "local") and "://" not in address:
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        except (OSError, ValueError) as exc:
            raise LearnerGroupError(
                f"cannot reach the Ray cluster at {address!r} ({exc}); start it with "
                "`ray start --head` or fix ray_address / RAY_ADDRESS"
            ) from exc
    try:
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            ray.init(
                # A Ray of its own even when another run's local Ray is up on this machine:
                # joining it would fail (object_store_memory) or die with that run.
                address="local",
                include_dashboard=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                _system_config=LOCAL_RAY_SYSTEM_CONFIG,
                # Learner warnings and errors should reach the user; Ray prefixes each line
                # with the actor that wrote it.
                log_to_driver=True,
            )
    except Exception as exc:  # whatever Ray raised, the user needs to know it was Ray
        where = f"the Ray cluster at {address!r}" if address else "a local Ray"
        raise LearnerGroupError(f"could not start or join {where}: {exc}") from exc


def ship_by_value(objects: list[Any]) -> None:
    """Make Ray send the code of ``objects`` by value when their module is not part of an
    installed distribution (a test file, a notebook helper): the actors could not import it.
    """
    from importlib.metadata import packages_distributions

    from ray import cloudpickle

    installed = set(packages_distributions()) | set(sys.stdlib_module_names)
    names = set()
    for obj in objects:
        members = [obj, type(obj), *(getattr(obj, n, None) for n in dir(obj))]
        names |= {getattr(m, "__module__", None) for m in members if callable(m)}
    for name in names - {None, "__main__", "builtins"}:
        module = sys.modules.get(name)
        if module is not None and name.partition(".")[0] not in installed:
            cloudpickle.register_pickle_by_value(module)


def actor_info() -> dict[str, Any]:
    """Where the calling Ray actor runs (actor id, node id, pid), for logs and placement
    checks."""
    ctx = ray.get_runtime_context()
    return {"actor_id": ctx.get_actor_id(), "node_id": ctx.get_node_id(), "pid": os.getpid()}


def placement_timeout() -> float:
    return float(os.environ.get(PLACEMENT_TIMEOUT_ENV, DEFAULT_PLACEMENT_TIMEOUT_S))


def _bundle(scaling: ScalingConfig) -> dict[str, float]:
    bundle = {
        "CPU": float(scaling.num_cpus_per_learner),
        "GPU": float(scaling.num_gpus_per_learner),
    }
    return {k: v for k, v in bundle.items() if v > 0}


def inside_reservation() -> bool:
    """True in an actor whose placement group captures what it starts (a Ray Tune trial's):
    that group already holds the resources of the actors it starts, which go in it."""
    if not ray.is_initialized():
        return False
    ctx = ray.get_runtime_context()
    return (
        get_current_placement_group() is not None
        and ctx.should_capture_child_tasks_in_placement_group
    )


def reserve(scaling: ScalingConfig) -> PlacementGroup | None:
    """A ready placement group with one bundle per learner (None when a learner asks for
    no resources, or inside a reservation: ``inside_reservation``), or a
    LearnerGroupError saying what the cluster lacks."""
    bundle = _bundle(scaling)
    if not bundle or inside_reservation():
        return None  # nothing to reserve: actors go wherever Ray puts them
    return reserve_bundles(
        bundle,
        scaling.num_learners,
        what="learner",
        error=LearnerGroupError,
        settings="num_learners or the per-learner resources",
    )


def reserve_bundles(
    bundle: dict[str, float],
    count: int,
    *,
    what: str,
    error: type[Exception],
    settings: str,
) -> PlacementGroup | None:
    """A ready SPREAD placement group of ``count`` bundles for ``count`` actors of kind
    ``what``, or ``error`` within ``placement_timeout()`` seconds saying what the cluster
    lacks and which ``settings`` to lower; None inside a reservation (a Tune trial's
    placement group, which holds their bundles: ``inside_reservation``)."""
    if inside_reservation():
        return None
    asked = ", ".join(f"{count} x {v:g} {k}" for k, v in bundle.items())
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if not any(all(res.get(k, 0) >= v for k, v in bundle.items()) for res in nodes):
        raise error(
            f"no node of the Ray cluster can hold one {what} ({bundle}); its nodes have "
            f"{[{k: r.get(k, 0) for k in bundle} for r in nodes]}. Lower {settings} or add "
            "bigger nodes"
        )
    # SPREAD puts actors on different nodes where it can (a node failure then takes
    # fewer of them) and packs them when it must.
    pg = placement_group([bundle] * count, strategy="SPREAD")
    timeout = placement_timeout()
    try:
        ray.get(pg.ready(), timeout=timeout)
    except GetTimeoutError:
        remove_placement_group(pg)
        total, free = ray.cluster_resources(), ray.available_resources()
        have = ", ".join(f"{k}: {free.get(k, 0):g} free of {total.get(k, 0):g}" for k in bundle)
        raise error(
            f"Ray could not reserve {asked} for {count} {what}(s) within {timeout:g} s; the "
            f"cluster has {have}. Lower {settings}, add nodes, or wait longer "
            f"({PLACEMENT_TIMEOUT_ENV})"
        ) from None
    return pg


def actor_options(scaling: ScalingConfig, pg: PlacementGroup | None, index: int) -> dict:
    """Ray actor options for learner ``index``: its resources, in its bundle of ``pg``."""
    options: dict[str, Any] = {
        "num_cpus": scaling.num_cpus_per_learner,
        "num_gpus": scaling.num_gpus_per_learner,
    }
    if pg is not None:
        options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
            pg, placement_group_bundle_index=index
        )
    return options
