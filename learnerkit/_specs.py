"""Configuration as frozen attrs classes: what to build, how to scale it, how it learns.

Every field is validated when the spec is made, so a bad value fails at once with the
field's name and what it allows, not at step 10,000. Use ``attrs.evolve`` for variants.

A leaf: nothing here asks the algorithm registry. ``LearnerSpec``, which does (for the
algorithm's hyperparameters class), is one floor up in ``learnerkit._learner_spec``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from learnerkit._import_path import is_import_path
from learnerkit.errors import ConfigError, LearnerkitDeprecationWarning
from learnerkit.fields import (
    _whole_to_int,
    check_schedule,
    non_negative,
    non_negative_int,
    one_of,
    positive,
    to_schedule,
)

__all__ = [
    "FRAMEWORKS",
    "Hyperparameters",
    "ModuleSpec",
    "ScalingConfig",
    "check_base_fields",
    "current_field_names",
    "evolve_hyperparameters",
    "renamed_fields_of",
    "structure_hyperparameters",
]

FRAMEWORKS = ("torch", "tf")


def renamed_fields_of(cls: type) -> dict[str, str]:
    """Old field name -> new name, for ``cls`` and its bases (``renamed_fields``)."""
    renames: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        renames.update(vars(klass).get("renamed_fields", {}))
    return renames


def current_field_names(
    cls: type, values: Mapping[str, Any], *, where: str = "", stacklevel: int = 2
) -> dict[str, Any]:
    """``values`` (keyword arguments, a config file's table) with old field names of ``cls``
    replaced by the new ones, each with a LearnerkitDeprecationWarning naming the new name;
    ``where`` says where the old name was written (" in run.toml")."""
    renames = renamed_fields_of(cls)
    current = dict(values)
    for old, new in renames.items():
        if old not in current:
            continue
        if new in current:
            raise ConfigError(
                f"{cls.__qualname__}: both {old!r} and {new!r}{where} are given, and {old!r} "
                f"is the old name of {new!r}; give only {new!r}"
            )
        warnings.warn(
            f"{cls.__qualname__}: the setting {old!r}{where} is now called {new!r}; rename it "
            "(the old name goes in the next release)",
            LearnerkitDeprecationWarning,
            stacklevel=stacklevel + 1,
        )
        current[new] = current.pop(old)
    return current


class _AcceptsOldFieldNames(type):
    """Hyperparameters classes take old field names as keyword arguments, with a warning."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if kwargs and renamed_fields_of(cls):
            kwargs = current_field_names(cls, kwargs, stacklevel=2)
        return super().__call__(*args, **kwargs)


@attrs.frozen(kw_only=True)
class Hyperparameters(metaclass=_AcceptsOldFieldNames):
    """Hyperparameters every algorithm shares; algorithms subclass this with their own.

    A field renamed in a release keeps its old name for one more (``renamed_fields``): the
    old name works as a keyword argument, in a config file, as an attribute, and as a field
    a subclass redefines to change its default, each with a LearnerkitDeprecationWarning
    naming the new one.
    """

    renamed_fields: ClassVar[Mapping[str, str]] = {}
    """Old field name -> new name, declared by the class that owns the field (merged with
    its bases')."""

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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Runs before attrs reads the class body: a subclass that redefines a field under
        # its old name (to change its default) redefines the new one.
        super().__init_subclass__(**kwargs)
        # The class body's own dict (not a copy): attrs reads the fields from it next.
        annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063
        renames = {o: n for o, n in renamed_fields_of(cls).items() if o in annotations}
        for old, new in renames.items():
            warnings.warn(
                f"{cls.__qualname__} redefines the setting {old!r}, which is now called "
                f"{new!r}: rename the field (the old name goes in the next release)",
                LearnerkitDeprecationWarning,
                stacklevel=2,
            )
            if old in cls.__dict__:
                setattr(cls, new, cls.__dict__[old])
                delattr(cls, old)
        if renames:
            renamed = {renames.get(k, k): v for k, v in annotations.items()}
            annotations.clear()
            annotations.update(renamed)

    def __getattr__(self, name: str) -> Any:
        # Only for names that are not attributes: an old field name reads the new field.
        new = renamed_fields_of(type(self)).get(name)
        if new is None:
            raise AttributeError(f"{type(self).__qualname__!r} object has no attribute {name!r}")
        warnings.warn(
            f"{type(self).__qualname__}.{name} is now called {new!r}; read that (the old name "
            "goes in the next release)",
            LearnerkitDeprecationWarning,
            stacklevel=2,
        )
        return getattr(self, new)


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


def _check_class_ref(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None or isinstance(value, type) or is_import_path(value):
        return
    raise ConfigError(
        f"ModuleSpec.{attribute.name} must be a class, its import path "
        f"'package.module:QualName', or None; got {value!r}"
    )


@attrs.frozen(kw_only=False)
class ModuleSpec:
    """What module to build: its spaces, its class (None = the algorithm's default module,
    else the default MLP actor-critic), and the options its class reads."""

    observation_space: Any = attrs.field(validator=_check_space("observation", ("Box",)))
    action_space: Any = attrs.field(validator=_check_space("action", ("Discrete", "Box")))
    module_class: type | str | None = attrs.field(default=None, validator=_check_class_ref)
    """A framework module class built as ``module_class(observation_space, action_space,
    model_config)``, or its import path ``"package.module:QualName"``, imported only where
    a module is built (a spec sent to env runners that act in numpy then never imports the
    framework). None: the algorithm's default module for the framework
    (``Algorithm.module_classes``; ``LearnerSpec.module_specs`` fills it in), else the
    framework's default MLP actor-critic."""
    model_config: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)
    """Options for the module class, e.g. ``{"hiddens": [64, 64], "activation": "tanh"}``."""
    numpy_copy: type | str | None = attrs.field(default=None, validator=_check_class_ref)
    """The numpy class env runners act with instead of the framework module (see
    ``learnerkit.rollouts.acting.NumpyModule``), or its import path. None: the module
    class's own ``numpy_copy`` attribute, if it has one (the default actor-critic's is
    ``NumpyActorCritic``), else runners act through the framework."""


@attrs.frozen(kw_only=True)
class ScalingConfig:
    """How many learners, and what each reserves. ``num_learners=0`` is one local Learner in
    this process; ``>= 1`` runs that many Ray actors training data-parallel."""

    num_learners: int = attrs.field(default=0, converter=_whole_to_int, validator=non_negative_int)
    num_cpus_per_learner: float = attrs.field(default=1, validator=non_negative)
    num_gpus_per_learner: float = attrs.field(default=0, validator=non_negative)
    """GPUs each learner trains on: 0 is the CPU. A learner uses one GPU, so at most 1.
    Ray learners reserve this much of a GPU (0.5: two learners share one, all-reducing
    through gloo; 1: a GPU each, all-reducing through NCCL). The local learner
    (``num_learners=0``) takes any value above 0 to mean the first visible GPU, whole
    (``cuda:0`` / ``/GPU:0``): no scheduler shares it in one process, as in RLlib."""

    @num_gpus_per_learner.validator
    def _at_most_one_gpu(self, attribute: attrs.Attribute, value: float) -> None:
        if value > 1:
            raise ConfigError(
                f"ScalingConfig.num_gpus_per_learner must be <= 1 (a learner trains on one "
                f"GPU), got {value!r}: to train on N GPUs, use num_learners=N with "
                "num_gpus_per_learner=1"
            )


def evolve_hyperparameters(
    base: Hyperparameters, overrides: Mapping[str, Any], *, module_id: str
) -> Hyperparameters:
    """``base`` with one module's ``overrides``, checked by the class's own validators; an
    unknown key or a bad value is a ConfigError naming the module, the key and the fix."""
    cls = type(base)
    where = f" in module_hyperparameters[{module_id!r}]"
    overrides = current_field_names(cls, overrides, where=where, stacklevel=2)
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


def structure_hyperparameters(
    cls: type[Hyperparameters], values: Mapping[str, Any], *, where: str = ""
) -> Hyperparameters:
    """Build ``cls`` from a plain mapping (a config file), naming any unknown key; an old
    field name is taken with a warning (``where``: " in run.toml")."""
    values = current_field_names(cls, values, where=where, stacklevel=2)
    known = {a.name for a in attrs.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown hyperparameter(s) {unknown} for {cls.__qualname__}; known: {sorted(known)}"
        )
    try:
        return cls(**values)
    except ConfigError:
        raise  # a validator's message names its field already
    except (TypeError, ValueError) as exc:
        # A field's converter refused its value (float("fast")): name the field, which the
        # converter's own message does not.
        raise ConfigError(
            f"{cls.__qualname__}: {_refused_value(cls, values) or 'a value'} cannot be used ({exc})"
        ) from exc


def _refused_value(cls: type[Hyperparameters], values: Mapping[str, Any]) -> str | None:
    """``name=value`` of the first field whose converter refuses its value, if one does."""
    for field in attrs.fields(cls):
        if field.name in values and field.converter is not None:
            try:
                field.converter(values[field.name])
            except (TypeError, ValueError):
                return f"{field.name}={values[field.name]!r}"
    return None
