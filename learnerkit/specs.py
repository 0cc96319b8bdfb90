"""Configuration as frozen attrs classes: what to build, how to scale it, how it learns.

Every field is validated when the spec is made, so a bad value fails at once with the
field's name and what it allows, not at step 10,000. Use ``attrs.evolve`` for variants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from learnerkit.errors import ConfigError
from learnerkit.fields import (
    check_schedule,
    non_negative,
    one_of,
    positive,
    to_schedule,
)

FRAMEWORKS = ("torch", "tf")


@attrs.frozen(kw_only=True)
class Hyperparameters:
    """Hyperparameters every algorithm shares; algorithms subclass this with their own."""

    learning_rate: float = attrs.field(default=3e-4, converter=float, validator=positive)
    """Step size of the default Adam optimizer."""
    lr_schedule: tuple[tuple[int, float], ...] | None = attrs.field(
        default=None, converter=to_schedule, validator=check_schedule
    )
    """Piecewise-linear ``[[timestep, lr], ...]`` over env steps; overrides ``learning_rate``
    once ``additional_update`` has run. Starts at timestep 0."""
    grad_clip: float | None = attrs.field(default=None, validator=positive)
    """Clip gradients at this value (see ``grad_clip_by``); None leaves them as they are."""
    grad_clip_by: str = attrs.field(
        default="global_norm", validator=one_of("value", "norm", "global_norm")
    )
    """How ``grad_clip`` clips, with RLlib's names and meaning: ``"value"`` clips every
    gradient element to ``[-grad_clip, grad_clip]``; ``"norm"`` scales each gradient tensor
    whose norm exceeds ``grad_clip`` down to it; ``"global_norm"`` scales all of a module's
    gradients together when their global norm exceeds it (per optimizer when the module has
    several, as RLlib does). On data-parallel learners clipping acts on the averaged
    gradients, so every learner clips alike."""
    seed: int = attrs.field(default=0, converter=int)
    """Seeds weight initialisation and minibatch shuffling."""
    non_finite: str = attrs.field(default="raise", validator=one_of("raise", "skip"))
    """What ``update`` does with NaN or infinite values (issue 9). A minibatch whose loss or
    gradient norm is not finite is never applied: weights and optimizer state stay as they
    were. ``"raise"``: a batch column holding NaN, inf or float64 values beyond float32's
    range is refused before training, and a minibatch that turns non-finite in the step
    raises NonFiniteError naming the module, epoch, minibatch and loss terms (the minibatches
    before it in the same update stay applied, none after it is). ``"skip"``: such
    minibatches are skipped, the others train, and the results count them under
    ``non_finite_minibatches_skipped``."""


def check_base_fields(value: Any, base: type) -> None:
    """Run the validators ``base`` declares on ``value``, an instance of a subclass: a
    subclass that redefines a field to change its default drops that field's validator
    (attrs replaces the whole field), so the base's checks are run again."""
    for field in attrs.fields(base):
        if field.validator is not None:
            field.validator(value, field, getattr(value, field.name))


def _check_space(kind: str, allowed: tuple[str, ...]):
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if type(value).__name__ not in allowed or not hasattr(value, "shape"):
            raise ConfigError(
                f"ModuleSpec.{attribute.name} must be a gymnasium space of type "
                f"{' or '.join(allowed)} for the default modules, got {value!r}"
            )

    return check


@attrs.frozen(kw_only=False)
class ModuleSpec:
    """What module to build: its spaces, its class (None = the default MLP actor-critic),
    and the options its class reads."""

    observation_space: Any = attrs.field(validator=_check_space("observation", ("Box",)))
    action_space: Any = attrs.field(validator=_check_space("action", ("Discrete", "Box")))
    module_class: type | None = None
    """A framework module class built as ``module_class(observation_space, action_space,
    model_config)``; None picks the framework's default MLP actor-critic."""
    model_config: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)
    """Options for the module class, e.g. ``{"hiddens": [64, 64], "activation": "tanh"}``."""


@attrs.frozen(kw_only=True)
class ScalingConfig:
    """How many learners, and what each reserves. ``num_learners=0`` is one local Learner in
    this process; ``>= 1`` runs that many Ray actors training data-parallel."""

    num_learners: int = attrs.field(default=0, validator=non_negative)
    num_cpus_per_learner: float = attrs.field(default=1, validator=non_negative)
    num_gpus_per_learner: float = attrs.field(default=0, validator=non_negative)


def _check_framework(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value not in FRAMEWORKS:
        raise ConfigError(f"LearnerSpec.framework must be one of {list(FRAMEWORKS)}, got {value!r}")


def _check_algorithm(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    from learnerkit._plugins import get_algorithm

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


def evolve_hyperparameters(
    base: Hyperparameters, overrides: Mapping[str, Any], *, module_id: str
) -> Hyperparameters:
    """``base`` with one module's ``overrides``, checked by the class's own validators; an
    unknown key or a bad value is a ConfigError naming the module, the key and the fix."""
    cls = type(base)
    known = {a.name for a in attrs.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"hyperparameter overrides for module {module_id!r} have unknown key(s) {unknown} "
            f"for {cls.__qualname__}; use one of {sorted(known)}"
        )
    try:
        value = attrs.evolve(base, **overrides)
        check_base_fields(value, Hyperparameters)
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"hyperparameter overrides for module {module_id!r} ({dict(overrides)!r}) are "
            f"invalid: {exc}; fix the value in module_hyperparameters[{module_id!r}]"
        ) from exc
    return value


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
        from learnerkit._plugins import get_algorithm

        return get_algorithm(self.algorithm).hyperparameters()

    @hyperparameters.validator
    def _check_hyperparameters(self, attribute: attrs.Attribute, value: Any) -> None:
        from learnerkit._plugins import get_algorithm

        expected = get_algorithm(self.algorithm).hyperparameters
        if not isinstance(value, expected):
            raise ConfigError(
                f"LearnerSpec.hyperparameters for algorithm {self.algorithm!r} must be a "
                f"{expected.__qualname__}, got {type(value).__qualname__}"
            )
        check_base_fields(value, Hyperparameters)

    def __attrs_post_init__(self) -> None:
        from learnerkit._plugins import get_algorithm

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
        """The module specs keyed by module id (a single spec under DEFAULT_MODULE_ID)."""
        from learnerkit.batch import DEFAULT_MODULE_ID

        if isinstance(self.module_spec, ModuleSpec):
            return {DEFAULT_MODULE_ID: self.module_spec}
        return dict(self.module_spec)


def structure_hyperparameters(cls: type[Hyperparameters], values: Mapping[str, Any]):
    """Build ``cls`` from a plain mapping (a config file), naming any unknown key."""
    known = {a.name for a in attrs.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown hyperparameter(s) {unknown} for {cls.__qualname__}; known: {sorted(known)}"
        )
    return cls(**values)
