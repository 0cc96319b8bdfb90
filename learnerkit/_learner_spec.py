"""``LearnerSpec``: everything needed to build identical Learners anywhere.

One floor above ``learnerkit._specs`` and the algorithm registry: a spec asks the registry
for its algorithm (to check the name, the frameworks it supports, and the hyperparameters
class), so it cannot live among the leaves the registry itself imports.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import attrs

from learnerkit._columns import DEFAULT_MODULE_ID
from learnerkit._plugins import NUMPY_COPY, Algorithm, get_algorithm
from learnerkit._specs import (
    FRAMEWORKS,
    Hyperparameters,
    ModuleSpec,
    ScalingConfig,
    check_base_fields,
    evolve_hyperparameters,
)
from learnerkit.errors import ConfigError

__all__ = ["LearnerSpec"]


def _check_framework(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value not in FRAMEWORKS:
        raise ConfigError(f"LearnerSpec.framework must be one of {list(FRAMEWORKS)}, got {value!r}")


def _check_algorithm(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    get_algorithm(value)  # raises UnknownAlgorithmError listing the installed ones


def _to_module_specs(value: Any) -> Mapping[str, ModuleSpec] | ModuleSpec:
    return value if isinstance(value, ModuleSpec) else dict(value)


def _check_module_specs(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    specs = value.values() if isinstance(value, Mapping) else [value]
    if not specs or not all(isinstance(s, ModuleSpec) for s in specs):
        raise ConfigError(
            "LearnerSpec.module_spec must be a ModuleSpec, or a non-empty dict of module id to "
            f"ModuleSpec for multi-agent learning, got {value!r}"
        )


def _to_module_ids(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise ConfigError(
            f"LearnerSpec.modules_to_train must be a collection of module ids (or None for "
            f"all), got the string {value!r}; write [{value!r}]"
        )
    return frozenset(str(m) for m in value)


def _to_module_hyperparameters(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise ConfigError(
            "LearnerSpec.module_hyperparameters must map module id to a mapping of "
            f"hyperparameter overrides, e.g. {{'b': {{'learning_rate': 1e-4}}}}, got {value!r}"
        )
    return {str(k): dict(v) for k, v in value.items()}


@attrs.frozen(kw_only=True)
class LearnerSpec:
    """Everything needed to build identical Learners anywhere (locally or in Ray actors)."""

    algorithm: str = attrs.field(validator=_check_algorithm)
    """Name of an installed (entry point) or registered algorithm, e.g. ``"ppo"``."""
    framework: str = attrs.field(default="torch", validator=_check_framework)
    module_spec: ModuleSpec | Mapping[str, ModuleSpec] = attrs.field(
        converter=_to_module_specs, validator=_check_module_specs
    )
    """One ModuleSpec (trained under ``DEFAULT_MODULE_ID``) or a dict per module id."""
    hyperparameters: Hyperparameters = attrs.field()
    scaling: ScalingConfig = attrs.field(factory=ScalingConfig)
    learner_class: type | None = None
    """A ``Learner`` subclass to build instead of ``Learner`` (the seed's override style)."""
    extra_plugins: tuple[Any, ...] = attrs.field(default=(), converter=tuple)
    """Plugins (modules or objects with hookimpls) that join the algorithm, e.g. metrics."""
    modules_to_train: frozenset[str] | None = attrs.field(default=None, converter=_to_module_ids)
    """The module ids ``update()`` trains; None trains every module. The other modules are
    frozen: rows a batch holds for them are ignored (not an error: training loops send all
    that the env runners sampled) and their weights, optimizer and algorithm state stay as
    they are. Change it while training with ``set_modules_to_train``."""
    module_hyperparameters: Mapping[str, Mapping[str, Any]] = attrs.field(
        factory=dict, converter=_to_module_hyperparameters
    )
    """Per-module overrides of ``hyperparameters``, e.g. ``{"b": {"learning_rate": 1e-4}}``:
    every hook called for module ``b`` (and its optimizer, gradient clipping, non-finite
    policy and learning-rate schedule) sees ``attrs.evolve(hyperparameters, **overrides)``,
    checked by the algorithm's validators (``Learner.hyperparameters_for``)."""

    @hyperparameters.default
    def _default_hyperparameters(self) -> Hyperparameters:
        return get_algorithm(self.algorithm).hyperparameters()

    @hyperparameters.validator
    def _check_hyperparameters(self, attribute: attrs.Attribute, value: Any) -> None:
        expected = get_algorithm(self.algorithm).hyperparameters
        if not isinstance(value, expected):
            raise ConfigError(
                f"LearnerSpec.hyperparameters for algorithm {self.algorithm!r} must be a "
                f"{expected.__qualname__}, got {type(value).__qualname__}"
            )
        check_base_fields(value, Hyperparameters)

    def __attrs_post_init__(self) -> None:
        info = get_algorithm(self.algorithm)
        if self.framework not in info.frameworks:
            raise ConfigError(
                f"algorithm {self.algorithm!r} supports frameworks {list(info.frameworks)}, "
                f"not {self.framework!r}"
            )
        ids = set(self.module_specs)
        for name, given in (
            ("modules_to_train", self.modules_to_train or ()),
            ("module_hyperparameters", self.module_hyperparameters),
        ):
            unknown = sorted(set(given) - ids)
            if unknown:
                raise ConfigError(
                    f"LearnerSpec.{name} names module(s) {unknown} that module_spec lacks (it "
                    f"has {sorted(ids)}); add them to module_spec, or add them while training "
                    "with add_module"
                )
        for module_id, overrides in self.module_hyperparameters.items():
            evolve_hyperparameters(self.hyperparameters, overrides, module_id=module_id)

    def hyperparameters_for(self, module_id: str) -> Hyperparameters:
        """The hyperparameters of one module: the base ones with its overrides, if any."""
        overrides = self.module_hyperparameters.get(module_id)
        if not overrides:
            return self.hyperparameters
        return evolve_hyperparameters(self.hyperparameters, overrides, module_id=module_id)

    @property
    def trainable_module_ids(self) -> frozenset[str]:
        """The module ids ``update()`` trains (``modules_to_train``, or every module)."""
        ids = frozenset(self.module_specs)
        return ids if self.modules_to_train is None else ids & self.modules_to_train

    def with_module(
        self,
        module_id: str,
        module_spec: ModuleSpec,
        *,
        hyperparameters: Mapping[str, Any] | None = None,
        train: bool = True,
    ) -> LearnerSpec:
        """This spec with one more module (what ``add_module`` builds from)."""
        if not isinstance(module_spec, ModuleSpec):
            raise ConfigError(
                f"add_module({module_id!r}, ...) takes a ModuleSpec, got {module_spec!r}"
            )
        specs = self.module_specs
        if module_id in specs:
            raise ConfigError(
                f"module {module_id!r} already exists (modules: {sorted(specs)}); "
                "remove_module it first to replace it"
            )
        to_train = self.modules_to_train
        if train and to_train is not None:
            to_train = to_train | {module_id}
        elif not train:
            to_train = (frozenset(specs) if to_train is None else to_train) - {module_id}
        overrides = dict(self.module_hyperparameters)
        if hyperparameters:
            overrides[module_id] = dict(hyperparameters)
        return attrs.evolve(
            self,
            module_spec={**specs, module_id: module_spec},
            modules_to_train=to_train,
            module_hyperparameters=overrides,
        )

    def without_module(self, module_id: str) -> LearnerSpec:
        """This spec without one module (what ``remove_module`` leaves)."""
        specs = self.module_specs
        if module_id not in specs:
            raise ConfigError(f"no module {module_id!r} to remove; modules: {sorted(specs)}")
        if len(specs) == 1:
            raise ConfigError(
                f"cannot remove {module_id!r}, the only module: a learner keeps at least one "
                "(add_module its replacement first)"
            )
        del specs[module_id]
        to_train = self.modules_to_train
        return attrs.evolve(
            self,
            module_spec=specs,
            modules_to_train=None if to_train is None else to_train - {module_id},
            module_hyperparameters={
                k: v for k, v in self.module_hyperparameters.items() if k != module_id
            },
        )

    @property
    def module_specs(self) -> dict[str, ModuleSpec]:
        """The module specs keyed by module id (a single spec under DEFAULT_MODULE_ID), as
        the algorithm completes them: a spec without ``module_class`` gets the algorithm's
        default module for the framework (``Algorithm.module_classes``), and every
        ``model_config`` the values of the algorithm's ``module_settings``. Completed once,
        when the spec is made, from the algorithm registered then: a group built while a
        plugin was registered in code keeps training after it is unregistered, as its
        learners do."""
        return dict(self._completed_module_specs)

    @functools.cached_property
    def _completed_module_specs(self) -> dict[str, ModuleSpec]:
        given = self.module_spec
        specs = {DEFAULT_MODULE_ID: given} if isinstance(given, ModuleSpec) else dict(given)
        algorithm = get_algorithm(self.algorithm)
        if not algorithm.module_classes and not algorithm.module_settings:
            return specs
        return {
            module_id: completed_module_spec(
                spec, algorithm, self.framework, self.hyperparameters_for(module_id)
            )
            for module_id, spec in specs.items()
        }


def completed_module_spec(
    spec: ModuleSpec, algorithm: Algorithm, framework: str, hyperparameters: Hyperparameters
) -> ModuleSpec:
    """``spec`` with ``algorithm``'s default module class for ``framework`` (and its numpy
    copy) when it names no class of its own, and its ``module_settings`` in the
    ``model_config`` (where the config does not set them already)."""
    classes, changes = algorithm.module_classes, {}
    if spec.module_class is None and framework in classes:
        changes["module_class"] = classes[framework]
        changes["numpy_copy"] = spec.numpy_copy or classes.get(NUMPY_COPY)
    settings = {name: getattr(hyperparameters, name) for name in algorithm.module_settings}
    if set(settings) - set(spec.model_config):
        changes["model_config"] = {**settings, **spec.model_config}
    return attrs.evolve(spec, **changes) if changes else spec


def require_learner_spec(spec: Any, taker: str) -> LearnerSpec:
    """``spec`` if it is a LearnerSpec; else a ConfigError naming what ``taker`` (``"Learner"``,
    ``"LearnerGroup"``) was given, where an attribute error would have come from deep inside."""
    if not isinstance(spec, LearnerSpec):
        raise ConfigError(
            f"{taker} takes a LearnerSpec, got a {type(spec).__name__}: build one with "
            "LearnerSpec(algorithm=..., module_spec=ModuleSpec(observation_space, "
            "action_space))"
        )
    return spec
