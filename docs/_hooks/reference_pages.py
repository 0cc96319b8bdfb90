"""MkDocs hook: writes the site's generated reference pages at build time, from the code
itself, so they cannot drift from it (issue 25).

- ``reference/hooks.md``: the hook specs of ``learnerkit.hookspecs``, in call order;
- ``reference/settings.md``: every installed training loop's and algorithm's settings (found
  by entry point, as ``learnerkit list-plugins`` finds them): name, type, default, validator
  and docstring of each attrs field;
- ``reference/declarations.md``: the arguments of ``Algorithm(...)``, ``LoopInfo(...)`` and
  ``ColumnSpec(...)``, the ``Columns`` names, and the validators of ``learnerkit.fields``;
- ``reference/cli.md``: ``learnerkit --help`` and each command's, from the argparse parser;
- ``reference/api/<module>.md``: one mkdocstrings page per module of
  ``learnerkit.api.PUBLIC_MODULES``.

Only light imports: listing plugins and building the parser load no framework.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import os
import textwrap
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from mkdocs.structure.files import File, Files

API_DIR = "reference/api"


# mkdocs entry point ------------------------------------------------------------------------
def on_files(files: Files, config: Any) -> Files:
    for path, content in generated_pages().items():
        files.append(File.generated(config, path, content=content))
    return files


def generated_pages() -> dict[str, str]:
    from learnerkit.api import PUBLIC_MODULES

    pages = {
        "reference/hooks.md": hooks_page(),
        "reference/settings.md": settings_page(),
        "reference/declarations.md": declarations_page(),
        "reference/cli.md": cli_page(),
    }
    for module in PUBLIC_MODULES:
        pages[f"{API_DIR}/{module}.md"] = api_page(module)
    return pages


# Markdown helpers --------------------------------------------------------------------------
def cell(text: Any) -> str:
    """One table cell: a single line, pipes escaped (a raw ``|`` would split the cell)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(text: Any) -> str:
    return f"`{cell(text)}`" if str(text) else ""


def table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(rows_cells) + " |" for rows_cells in rows]
    return "\n".join(lines) + "\n"


def docstring_markdown(text: str | None) -> str:
    """A reST-flavoured docstring (``double backticks``) as one Markdown line."""
    return cell((text or "").replace("``", "`"))


GENERATED_NOTE = (
    "<!-- Generated at build time by docs/_hooks/reference_pages.py: edit the code, "
    "not this page. -->\n"
)


# Attribute docstrings (attrs keeps none) ---------------------------------------------------
def attribute_docstrings(cls: type) -> dict[str, str]:
    """``name -> docstring`` for the string literal under each annotated attribute of
    ``cls`` and its bases (the nearest class's wins, as attribute lookup would)."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        (node,) = ast.parse(source).body
        body = getattr(node, "body", [])
        for first, second in itertools.pairwise(body):
            target = (
                first.target
                if isinstance(first, ast.AnnAssign)
                else (first.targets[0] if isinstance(first, ast.Assign) else None)
            )
            if (
                isinstance(target, ast.Name)
                and isinstance(second, ast.Expr)
                and isinstance(second.value, ast.Constant)
                and isinstance(second.value.value, str)
            ):
                found[target.id] = inspect.cleandoc(second.value.value)
    return found


def validator_names(validator: Any) -> str:
    if validator is None:
        return ""
    parts = getattr(validator, "_validators", None)  # attrs' and_(...): several in a list
    if parts is not None:
        return ", ".join(validator_names(v) for v in parts)
    name = getattr(validator, "__qualname__", None) or getattr(validator, "__name__", None)
    return name.replace(".<locals>", "") if name else repr(validator)


def default_text(field: attrs.Attribute) -> str:
    default = field.default
    if default is attrs.NOTHING:
        return "required"
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        default = default.factory() if not default.takes_self else "computed"
    return repr(default)


def type_text(field: attrs.Attribute) -> str:
    kind = field.type
    if kind is None:
        return ""
    return kind if isinstance(kind, str) else getattr(kind, "__name__", repr(kind))


def fields_table(cls: type, names: Iterable[str] | None = None, notes: dict | None = None) -> str:
    docs = attribute_docstrings(cls)
    chosen = attrs.fields(cls) if names is None else [attrs.fields_dict(cls)[n] for n in names]
    rows = []
    for field in chosen:
        if field.name.startswith("_"):
            continue
        doc = docstring_markdown(docs.get(field.name, ""))
        note = (notes or {}).get(field.name)
        rows.append(
            (
                code(field.name),
                code(type_text(field)),
                code(default_text(field)),
                code(validator_names(field.validator)),
                f"{note} {doc}".strip() if note else doc,
            )
        )
    return table(("name", "type", "default", "validator", "what it is"), rows)


def qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# reference/hooks.md ------------------------------------------------------------------------
def hook_specs() -> list[Callable]:
    from learnerkit import hookspecs

    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return [
        value
        for value in vars(hookspecs).values()
        if inspect.isfunction(value) and hasattr(value, marker)
    ]


def hooks_page() -> str:
    rows = []
    for spec in hook_specs():
        summary = inspect.getdoc(spec).split("\n\n")[0]
        params = ", ".join(inspect.signature(spec).parameters)
        link = f"[`{spec.__name__}`](#learnerkit.hookspecs.{spec.__name__})"
        rows.append((link, params, docstring_markdown(summary)))
    return (
        GENERATED_NOTE + "# Hook reference\n\n"
        "The plugin contract, generated from `learnerkit/hookspecs.py`. A Learner calls the "
        "hooks in this order; an implementation takes any subset of the keyword arguments "
        "(see [Writing an algorithm](../writing-an-algorithm.md)).\n\n"
        + table(("hook", "arguments", "what it does"), rows)
        + mkdocstrings_block("learnerkit.hookspecs", [spec.__name__ for spec in hook_specs()])
    )


# reference/settings.md ---------------------------------------------------------------------
def settings_page() -> str:
    import learnerkit
    from learnerkit._specs import Hyperparameters
    from learnerkit.settings import SamplingSettings

    out = [
        GENERATED_NOTE,
        "# Settings reference\n\n"
        "Every setting of the training loops and algorithms installed when this site was built "
        "(found by entry point, as `learnerkit list-plugins` finds them), generated from their "
        "attrs classes: a setting is given as a keyword argument of the class, a key of a "
        "`--config` file, or a `TrainConfig(overrides=...)` entry. A bad value is a "
        "`ConfigError` naming the field and what it allows (the validator).\n\n",
        "## Every algorithm: `Hyperparameters`\n\n",
        f"`{qualified(Hyperparameters)}`: shared by every algorithm.\n\n",
        fields_table(Hyperparameters),
        "\n## Every sampling loop: `SamplingSettings`\n\n",
        f"`{qualified(SamplingSettings)}`, on top of `Hyperparameters`: what every loop that "
        "samples environments reads.\n\n",
        fields_table(SamplingSettings, *own_fields(SamplingSettings, Hyperparameters)),
        "\n## Training loops\n\n",
    ]
    documented: dict[type, str] = {Hyperparameters: "Hyperparameters"}
    documented[SamplingSettings] = "SamplingSettings"
    for row in learnerkit.list_training_loops():
        if row.status != "ok":
            out.append(f"### `{row.name}`\n\nNot loaded ({row.status}): {cell(row.error)}\n\n")
            continue
        info = learnerkit.get_training_loop(row.name)
        cls = info.settings
        base = SamplingSettings if issubclass(cls, SamplingSettings) else Hyperparameters
        out.append(
            f"### `{info.name}`\n\n{cell(info.summary)}. Settings: `{qualified(cls)}`, on top of "
            f"`{base.__name__}` ({row.package} {row.version}).\n\n"
        )
        own, notes = own_fields(cls, base)
        out.append(fields_table(cls, own, notes))
        out.append("\n")
        documented.setdefault(cls, info.name)
    out.append("## Algorithms\n\n")
    for row in learnerkit.list_plugins():
        if row.status != "ok":
            out.append(f"### `{row.name}`\n\nNot loaded ({row.status}): {cell(row.error)}\n\n")
            continue
        algorithm = learnerkit.get_algorithm(row.name)
        out.append(algorithm_settings(algorithm, row, documented))
    return "".join(out)


def own_fields(cls: type, base: type) -> tuple[list[str], dict[str, str]]:
    """The fields ``cls`` adds to ``base`` or whose default it changes, and a note for
    each changed default."""
    inherited = attrs.fields_dict(base)
    own, notes = [], {}
    for field in attrs.fields(cls):
        old = inherited.get(field.name)
        if old is None:
            own.append(field.name)
        elif default_text(old) != default_text(field):
            own.append(field.name)
            notes[field.name] = f"(default changed from `{cell(default_text(old))}`)"
    return own, notes


def algorithm_settings(algorithm: Any, row: Any, documented: dict[type, str]) -> str:
    cls = algorithm.hyperparameters
    base = next(klass for klass in cls.__mro__ if klass in documented)
    own, notes = own_fields(cls, base)
    loop = (
        f"trained by the `{algorithm.training_loop}` loop"
        if algorithm.training_loop
        else ("no training loop: trained through the Learner API")
    )
    text = (
        f"### `{algorithm.name}`\n\n{cell(algorithm.description)} ({row.package} {row.version}; "
        f"{loop}). Hyperparameters: `{qualified(cls)}`, on top of `{base.__name__}` "
        "(its settings and the ones above it are in their tables); the rows below are the "
        "algorithm's own settings and the defaults it changes.\n\n"
    )
    if algorithm.env_presets:
        presets = ", ".join(f"`{env}`" for env in sorted(algorithm.env_presets))
        text += f"Tuned presets (`learnerkit train --env`): {presets}.\n\n"
    return text + (fields_table(cls, own, notes) if own else "No settings of its own.\n") + "\n"


# reference/declarations.md -----------------------------------------------------------------
def declarations_page() -> str:
    from learnerkit import Algorithm, Columns, ColumnSpec, LoopInfo, fields
    from learnerkit._columns import DEPRECATED_COLUMNS

    columns = attribute_docstrings(Columns)
    column_rows = [
        (code(f"Columns.{name}"), code(repr(value)), docstring_markdown(columns.get(name)))
        for name, value in vars(Columns).items()
        if name.isupper()
    ]
    column_rows += [
        (code(f"Columns.{name}"), code(repr(value)), f"Deprecated. {docstring_markdown(why)}")
        for name, (value, why) in DEPRECATED_COLUMNS.items()
    ]
    validator_rows = [
        (code(name), docstring_markdown(inspect.getdoc(getattr(fields, name))))
        for name in sorted(fields.__all__)
    ]
    return (
        GENERATED_NOTE + "# Declarations reference\n\n"
        "What a plugin declares, generated from the classes themselves.\n\n"
        "## `Algorithm(...)`\n\n"
        "A plugin module declares `algorithm = Algorithm(...)` (see "
        "[Writing an algorithm](../writing-an-algorithm.md)). Metadata only: building it "
        "imports no framework. Every argument is a keyword argument:\n\n"
        + fields_table(Algorithm)
        + "\n## `LoopInfo(...)`\n\n"
        "A loop package's declaration (see [Writing a training loop]"
        "(../writing-a-training-loop.md)): `name`, `settings`, `target` and `summary` may be "
        "given by position.\n\n" + fields_table(LoopInfo) + "\n## `ColumnSpec(...)`\n\n"
        "The form of a column an algorithm reads (`Algorithm(column_specs={name: ColumnSpec(...)})`"
        "), checked before training.\n\n" + fields_table(ColumnSpec) + "\n## `Columns`\n\n"
        "The standard column names (`from learnerkit import Columns`; the strings are RLlib's). "
        "Which ones a batch holds is its training loop's to say: see [Training loops]"
        "(../concepts/training-loops.md).\n\n"
        + table(("name", "string", "what it holds"), column_rows)
        + "\n## Validators and converters: `learnerkit.fields`\n\n"
        "For the fields of your hyperparameters or settings class: `attrs.field(default=..., "
        "validator=positive)` (validators), `attrs.field(converter=to_schedule)` (converters). "
        "A bad value fails when the settings are made, with a `ConfigError` naming the field.\n\n"
        + table(("name", "what it checks or converts"), validator_rows)
    )


# reference/cli.md --------------------------------------------------------------------------
def cli_page() -> str:
    import argparse

    from learnerkit.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps help at the terminal's width
    parser = build_parser()
    out = [
        GENERATED_NOTE,
        "# Command-line reference\n\n"
        "Generated from the `learnerkit` command's argparse parser (`learnerkit/cli.py`); "
        "[Getting started](../getting-started.md) shows the commands at work.\n\n",
        "```text\n" + parser.format_help() + "```\n\n",
    ]
    for action in parser._actions:  # argparse has no public walk over its subcommands
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append(f"## `learnerkit {name}`\n\n```text\n{sub.format_help()}```\n\n")
    return "".join(out)


# reference/api/<module>.md -----------------------------------------------------------------
def api_page(module: str) -> str:
    members = None
    intro = ""
    if module == "learnerkit.hookspecs":  # the hooks have a page of their own
        from learnerkit import hookspecs

        hooks = {spec.__name__ for spec in hook_specs()}
        members = [name for name in hookspecs.__all__ if name not in hooks]
        intro = "The hooks themselves are on the [hook reference](../hooks.md) page.\n\n"
    return GENERATED_NOTE + f"# `{module}`\n\n" + intro + mkdocstrings_block(module, members)


def mkdocstrings_block(module: str, members: list[str] | None = None) -> str:
    """An mkdocstrings directive for ``module`` (only ``members``, in that order, if given):
    each object gets one page, so cross-references have one target."""
    options = [
        "show_root_heading: false",
        "show_root_toc_entry: false",
        "heading_level: 2",
    ]
    if members is not None:
        options.append(f"members: [{', '.join(members)}]")
    return f"\n::: {module}\n    options:\n" + "".join(f"      {o}\n" for o in options)
