"""Search spaces for ``learnerkit tune``: the ``--param NAME=SPEC`` syntax, where each value
goes in a ``TrainConfig``, and the check of a space against the algorithm's validators
before any trial starts. No Ray here: a space becomes Tune's only in ``to_tune``.

SPEC is one of ``choice(a, b, ...)``, ``grid(a, b, ...)`` (every value, each with
``--num-samples`` samples of the rest), ``uniform(lo, hi)``, ``loguniform(lo, hi)``,
``randint(lo, hi)`` (``lo`` to ``hi - 1``, as Tune's), or a constant. Values are Python
literals (``1e-3``, ``[64, 64]``, ``true``/``false``, ``"relu"``; a bare word is a string).

NAME is a hyperparameter (``learning_rate``), ``model_config.KEY`` (``model_config.hiddens``)
or ``module_hyperparameters.MODULE.KEY`` (a hyperparameter of one module of a multi-agent
run), the keys ``learnerkit train --config`` reads.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from learnerkit.errors import ConfigError

__all__ = [
    "DOMAINS",
    "Domain",
    "SearchSpace",
    "config_parts",
    "grid_size",
    "nest_values",
    "parse_param",
    "parse_space",
    "read_space_file",
    "space_from_table",
    "validate_space",
]

DOMAINS = ("choice", "grid", "uniform", "loguniform", "randint")
"""The search-space functions of ``--param NAME=SPEC``."""

_SPECS = {
    "choice": "choice(a, b, ...)",
    "grid": "grid(a, b, ...)",
    "uniform": "uniform(lo, hi)",
    "loguniform": "loguniform(lo, hi)",
    "randint": "randint(lo, hi)",
}
MODEL_CONFIG = "model_config"
MODULE_HYPERPARAMETERS = "module_hyperparameters"
_LITERALS = {"true": True, "false": False, "null": None, "none": None}


@attrs.frozen
class Domain:
    """One hyperparameter's search space: ``kind`` (one of ``DOMAINS``) over ``values``
    (the choices, or ``(lo, hi)``)."""

    kind: str
    values: tuple[Any, ...] = attrs.field(converter=tuple)

    def __attrs_post_init__(self) -> None:
        if self.kind not in DOMAINS:
            raise ConfigError(f"unknown search space {self.kind!r}; use one of {DOMAINS}")
        if self.kind in ("choice", "grid"):
            if not self.values:
                raise ConfigError(f"{self}: give at least one value, e.g. {_SPECS[self.kind]}")
            return
        if len(self.values) != 2 or not all(_is_number(v) for v in self.values):
            raise ConfigError(f"{self} takes two numbers: {_SPECS[self.kind]}")
        lo, hi = self.values
        if not lo < hi:
            raise ConfigError(f"{self}: lo must be below hi")
        if self.kind == "loguniform" and lo <= 0:
            raise ConfigError(f"{self}: loguniform needs lo > 0 (it samples log(lo)..log(hi))")
        if self.kind == "randint" and not all(isinstance(v, int) for v in self.values):
            raise ConfigError(f"{self}: randint takes integers (hi excluded)")

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(repr(v) for v in self.values)})"

    def edge_values(self) -> list[Any]:
        """The values a trial could get that validators are most likely to refuse: every
        choice, else the ends of the range (``randint``'s last is ``hi - 1``)."""
        if self.kind in ("choice", "grid"):
            return list(self.values)
        lo, hi = self.values
        return [lo, hi - 1] if self.kind == "randint" else [lo, hi]

    def to_tune(self) -> Any:
        """Tune's search-space object for this domain (imports Ray Tune)."""
        from ray import tune

        if self.kind == "grid":
            return tune.grid_search(list(self.values))
        if self.kind == "choice":
            return tune.choice(list(self.values))
        return getattr(tune, self.kind)(*self.values)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


SearchSpace = dict[str, Any]
"""Flat ``NAME -> Domain or constant``, NAME as ``--param`` writes it (dots for nesting)."""


def _literal(node: ast.expr, text: str) -> Any:
    if isinstance(node, ast.Name):  # a bare word: a boolean, null, or a string
        return _LITERALS.get(node.id.lower(), node.id)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ConfigError(
            f"cannot read {ast.get_source_segment(text, node)!r} in {text!r}: write numbers, "
            "strings, true/false or lists"
        ) from None


def parse_value(text: str) -> Any:
    """A SPEC: a ``Domain`` or a constant."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return text.strip()  # a string that is no expression: "CartPole-v1"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        kind = node.func.id
        if kind not in DOMAINS:
            raise ConfigError(
                f"{text!r}: unknown search space {kind!r}; use one of "
                f"{', '.join(_SPECS.values())}, or a constant"
            )
        if node.keywords:
            raise ConfigError(f"{text!r}: {kind} takes values only, as {_SPECS[kind]}")
        return Domain(kind, [_literal(arg, text) for arg in node.args])
    try:
        return _literal(node, text)
    except ConfigError:
        return text.strip()  # a string that is no literal: "ppo-v1"


def parse_param(text: str) -> tuple[str, Any]:
    """``NAME=SPEC`` as ``(NAME, Domain or constant)``."""
    name, sep, spec = text.partition("=")
    name = name.strip()
    if not sep or not name or not spec.strip():
        raise ConfigError(
            f"--param {text!r}: write NAME=SPEC, e.g. learning_rate=loguniform(1e-4, 1e-2) or "
            "model_config.hiddens=choice([64, 64], [256, 256])"
        )
    try:
        return name, parse_value(spec)
    except ConfigError as exc:
        raise ConfigError(f"--param {name}: {exc}") from None


def parse_space(params: Iterable[str]) -> SearchSpace:
    """``--param`` arguments as a search space; a name given twice is an error."""
    space: SearchSpace = {}
    for text in params:
        name, value = parse_param(text)
        if name in space:
            raise ConfigError(f"--param {name} is given twice; give each name once")
        space[name] = value
    return space


def read_space_file(path: str) -> SearchSpace:
    """A ``--config`` file (JSON or TOML, as ``learnerkit train`` reads) whose string values
    may be SPECs: ``{"learning_rate": "loguniform(1e-4, 1e-2)", "model_config": {...}}``."""
    from learnerkit.loops._run_output import read_config_file

    return space_from_table(read_config_file(path))


def space_from_table(table: Mapping[str, Any], prefix: str = "") -> SearchSpace:
    """A table as a config file holds it (``model_config`` and
    ``module_hyperparameters`` nested; strings may be SPECs), as a flat space."""
    space: SearchSpace = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        nested = name == MODEL_CONFIG or name.startswith(MODULE_HYPERPARAMETERS)
        if isinstance(value, Mapping) and nested:
            space.update(space_from_table(value, f"{name}."))
        elif isinstance(value, str):
            parsed = parse_value(value)  # a SPEC is a domain; other strings stay strings
            space[name] = parsed if isinstance(parsed, Domain) else value
        else:
            space[name] = value
    return space


def nest_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Flat ``NAME -> value`` (one trial's) as the table ``learnerkit train --config``
    reads: hyperparameters at the top, ``model_config`` and ``module_hyperparameters``
    nested."""
    table: dict[str, Any] = {}
    for name, value in values.items():
        head, _, rest = name.partition(".")
        if head == MODEL_CONFIG and rest:
            table.setdefault(MODEL_CONFIG, {})[rest] = value
        elif head == MODULE_HYPERPARAMETERS and "." in rest:
            module_id, _, key = rest.partition(".")
            table.setdefault(MODULE_HYPERPARAMETERS, {}).setdefault(module_id, {})[key] = value
        elif head in (MODEL_CONFIG, MODULE_HYPERPARAMETERS) or "." in name:
            raise ConfigError(
                f"{name!r} is not a setting name: write a hyperparameter (learning_rate), "
                "model_config.KEY or module_hyperparameters.MODULE.KEY"
            )
        else:
            table[name] = value
    return table


def config_parts(values: Mapping[str, Any]) -> dict[str, Any]:
    """One trial's values as ``TrainConfig`` fields: ``overrides``, ``model_config`` and
    ``module_hyperparameters``."""
    table = nest_values(values)
    return {
        "model_config": table.pop(MODEL_CONFIG, None),
        "module_hyperparameters": table.pop(MODULE_HYPERPARAMETERS, {}),
        "overrides": table,
    }


def validate_space(space: SearchSpace, check: Any) -> None:
    """Refuse a space with a value a trial could be given that the run would refuse.
    ``check(values)`` builds the run's settings from one trial's flat values (raising the
    ConfigError a run would); it is called with every domain at each of its edge values,
    the others at their first, so a bad name or a bad end of a range fails here, before
    any trial starts."""
    firsts = {n: v.edge_values()[0] if isinstance(v, Domain) else v for n, v in space.items()}
    tries = [firsts] + [
        {**firsts, name: value}
        for name, domain in space.items()
        if isinstance(domain, Domain)
        for value in domain.edge_values()[1:]
    ]
    for values in tries:
        try:
            check(values)
        except (ConfigError, TypeError, ValueError) as exc:
            changed = [n for n in space if isinstance(space[n], Domain) and values[n] != firsts[n]]
            at = ", ".join(f"{n}={values[n]!r}" for n in (changed or list(space)))
            raise ConfigError(
                f"the search space is refused at {at}: {exc}. Narrow --param so every "
                "value it can take is valid"
            ) from exc


def grid_size(space: SearchSpace) -> int:
    """Trials a grid makes per sample (1 without a ``grid``)."""
    sizes = [len(v.values) for v in space.values() if isinstance(v, Domain) and v.kind == "grid"]
    return math.prod(sizes) if sizes else 1
