"""The plugin API: its version, the modules it is made of, and the check of what a plugin
says it needs.

``API_VERSION`` moves with learnerkit's minor version (0.2.x: "0.2"). A plugin declares the
API it was written for, ``Algorithm(requires_api=">=0.2")`` (or ``LoopInfo(...,
requires_api=...)``), as a PEP 440 specifier; ``learnerkit list-plugins`` shows a plugin whose
specifier this API does not meet as ``incompatible``, with the fix, and loading it is a
PluginError.

``PUBLIC_MODULES`` is the stable surface: each declares ``__all__``, and a name in one of
them is renamed or removed only after a release in which the old name still works with a
DeprecationWarning naming the new one (CHANGELOG, "Deprecated"). Every other module of
learnerkit is internal and private by name (``learnerkit._learner``,
``learnerkit.loops._on_policy``, the package ``learnerkit._distributed``): it may change in
any release. ``MOVED_MODULES`` are old paths of internal modules that plugins were likely
to import from: they still import until 0.3, and each name read from one warns with the
place to import it from.

A leaf: ``packaging`` is imported only when a plugin declares a specifier.
"""

from __future__ import annotations

from learnerkit.errors import PluginError

__all__ = ["API_VERSION", "MOVED_MODULES", "PUBLIC_MODULES", "api_mismatch"]

API_VERSION = "0.2"

PUBLIC_MODULES = (
    "learnerkit",
    "learnerkit.api",
    "learnerkit.backends",
    "learnerkit.backends.tf.encoders",
    "learnerkit.backends.tf.modules",
    "learnerkit.backends.torch.encoders",
    "learnerkit.backends.torch.modules",
    "learnerkit.checkpoint",
    "learnerkit.cli",
    "learnerkit.coefficients",
    "learnerkit.conv_encoders",
    "learnerkit.data_parallel",
    "learnerkit.distributions",
    "learnerkit.envs",
    "learnerkit.envs.multi_agent_memory",
    "learnerkit.errors",
    "learnerkit.fields",
    "learnerkit.hookspecs",
    "learnerkit.loops",
    "learnerkit.loops.builtin",
    "learnerkit.loops.contract",
    "learnerkit.loops.settings",
    "learnerkit.loss_mask",
    "learnerkit.model_config",
    "learnerkit.ops",
    "learnerkit.replay",
    "learnerkit.rollouts",
    "learnerkit.rollouts.acting",
    "learnerkit.rollouts.datasets",
    "learnerkit.settings",
    "learnerkit.testing",
    "learnerkit.training_loops",
    "learnerkit.tune",
    "learnerkit.tune.space",
)

# old path -> the internal module it became (issue 19: private by name since 0.2)
MOVED_MODULES = {
    "learnerkit.batch": "learnerkit._batch",
    "learnerkit.columns": "learnerkit._columns",
    "learnerkit.learner": "learnerkit._learner",
    "learnerkit.learner_group": "learnerkit._learner_group",
    "learnerkit.learner_spec": "learnerkit._learner_spec",
    "learnerkit.specs": "learnerkit._specs",
}


def api_mismatch(requires_api: str | None, what: str) -> str | None:
    """Why ``what`` (``"plugin 'a2c'"``) cannot run on this API, with the fix; None when
    ``requires_api`` is None or this API meets it. A malformed specifier raises PluginError."""
    if requires_api is None:
        return None
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        specifier = SpecifierSet(requires_api)
    except (InvalidSpecifier, TypeError) as exc:
        raise PluginError(
            f"{what}: requires_api={requires_api!r} is not a version specifier; write one "
            f"like '>=0.2' or '>=0.2,<0.3' (PEP 440)"
        ) from exc
    # Pre-releases count: a plugin asking for >=0.2 runs on 0.2 whatever the patch level.
    if specifier.contains(API_VERSION, prereleases=True):
        return None
    return (
        f"{what} requires learnerkit API {requires_api}, and this learnerkit provides API "
        f"{API_VERSION}: install a learnerkit whose API matches (`pip install "
        f"'learnerkit{requires_api.replace(' ', '')}'`), or a version of the plugin written for "
        f"API {API_VERSION} (see the CHANGELOG's 'Deprecated' and 'Removed' sections for what "
        "changed)"
    )
