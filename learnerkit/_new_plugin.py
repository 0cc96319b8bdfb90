"""``learnerkit new-plugin NAME --loop LOOP``: write a complete, installable algorithm plugin
package that passes its own tests: ``pyproject.toml`` with the entry point, the algorithm
module (hyperparameters on the loop's settings, each hook with a docstring saying what to
fill in, a working starting loss), a README, and tests using ``learnerkit.testing``.

The starting losses are small textbook ones, chosen by the loop's settings class and
meeting its batches: A2C (``OnPolicySettings``), one-step actor-critic on fragments
(``AsyncSettings``), behaviour cloning (``OfflineSettings``), Q-learning on the default
module's logits (``ReplaySettings``). Light: no framework is imported.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from learnerkit import settings
from learnerkit._plugins import list_plugins
from learnerkit.errors import ConfigError
from learnerkit.training_loops import get_training_loop, list_training_loops

__all__ = ["loops_with_a_template", "write_plugin"]

NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# The starting loss is chosen by the loop's settings class (the host names no loop): a loop
# whose settings derive from one of these gets its template.
TEMPLATED = (
    settings.OnPolicySettings,
    settings.AsyncSettings,
    settings.OfflineSettings,
    settings.ReplaySettings,
)

# What the loss reads, its extra hyperparameters, and its body, per loop.
ACTOR_CRITIC_FIELDS = '''
    vf_loss_coeff: float = attrs.field(default=0.5, converter=float, validator=non_negative)
    """Weight of the value loss in the total loss."""
    entropy_coeff: float = attrs.field(default=0.01, converter=float, validator=non_negative)
    """Weight of the entropy bonus (exploration)."""
'''

LOSSES = {
    "OnPolicySettings": (
        ("OBS", "ACTIONS", "ADVANTAGES", "VALUE_TARGETS"),
        ACTOR_CRITIC_FIELDS,
        """    # A2C (Mnih et al. 2016): the loop gives GAE advantages and value targets.
    hps = hyperparameters
    dist = module.action_dist(fwd_out[Columns.ACTION_DIST_INPUTS])
    pg_loss = -ops.mean(dist.logp(batch[Columns.ACTIONS]) * batch[Columns.ADVANTAGES])
    vf_loss = ops.mean(ops.square(fwd_out[Columns.VF_PREDS] - batch[Columns.VALUE_TARGETS]))
    entropy = ops.mean(dist.entropy())
    total_loss = pg_loss + hps.vf_loss_coeff * vf_loss - hps.entropy_coeff * entropy
    return {
        "total_loss": total_loss,
        "policy_loss": pg_loss,
        "vf_loss": vf_loss,
        "entropy": entropy,
    }
""",
    ),
    "AsyncSettings": (
        ("OBS", "NEXT_OBS", "ACTIONS", "REWARDS", "TERMINATEDS"),
        ACTOR_CRITIC_FIELDS,
        """    # One-step actor-critic on the loop's fragments (no off-policy correction: add
    # V-trace, as learnerkit_impala.vtrace does, for that).
    hps = hyperparameters
    dist = module.action_dist(fwd_out[Columns.ACTION_DIST_INPUTS])
    values = fwd_out[Columns.VF_PREDS]
    next_values = ops.stop_gradient(module.value(batch[Columns.NEXT_OBS]))
    not_done = 1.0 - ops.float32(batch[Columns.TERMINATEDS])
    targets = ops.stop_gradient(batch[Columns.REWARDS] + hps.gamma * not_done * next_values)
    advantages = ops.stop_gradient(targets - values)
    pg_loss = -ops.mean(dist.logp(batch[Columns.ACTIONS]) * advantages)
    vf_loss = ops.mean(ops.square(values - targets))
    entropy = ops.mean(dist.entropy())
    total_loss = pg_loss + hps.vf_loss_coeff * vf_loss - hps.entropy_coeff * entropy
    return {
        "total_loss": total_loss,
        "policy_loss": pg_loss,
        "vf_loss": vf_loss,
        "entropy": entropy,
    }
""",
    ),
    "OfflineSettings": (
        ("OBS", "ACTIONS"),
        "",
        """    # Behaviour cloning: the negative log-likelihood of the dataset's actions.
    dist = module.action_dist(fwd_out[Columns.ACTION_DIST_INPUTS])
    policy_loss = -ops.mean(dist.logp(batch[Columns.ACTIONS]))
    return {
        "total_loss": policy_loss,
        "policy_loss": policy_loss,
        "entropy": ops.mean(dist.entropy()),
    }
""",
    ),
    "ReplaySettings": (
        ("OBS", "ACTIONS", "REWARDS", "NEXT_OBS", "DISCOUNTS", "WEIGHTS"),
        "",
        """    # Q-learning on the default module's logits as Q-values (discrete actions; its
    # policy then acts by a softmax over them). A DQN-style module, target network and
    # double Q: see learnerkit_dqn.
    q = fwd_out[Columns.ACTION_DIST_INPUTS]
    q_taken = ops.take_along_last(q, batch[Columns.ACTIONS])
    q_next = module.forward_train({Columns.OBS: batch[Columns.NEXT_OBS]})
    q_next = q_next[Columns.ACTION_DIST_INPUTS]
    best_next = ops.take_along_last(q_next, ops.argmax_last(q_next))
    # discounts: gamma ** n, 0 after a termination (the loop computes n-step returns).
    discounts = batch[ReplayColumns.DISCOUNTS]
    target = ops.stop_gradient(batch[Columns.REWARDS] + discounts * best_next)
    td_error = q_taken - target
    loss = ops.mean(batch[ReplayColumns.WEIGHTS] * 0.5 * ops.square(td_error))
    return {
        "total_loss": loss,
        "q_mean": ops.mean(q_taken),
        # Per-row TD errors set prioritized replay's priorities (prioritized_replay=True).
        PER_ROW: {"td_error": ops.stop_gradient(td_error)},
    }
""",
    ),
}

MODULE = Template('''"""${title}: a learnerkit algorithm plugin (training loop: "${loop}").

Written by ``learnerkit new-plugin``. The hooks below are called by the Learner in this
order: ``configure_optimizers`` (once per module), ``compute_loss`` (every minibatch),
``additional_update`` (once per iteration), ``compile_results`` (end of each update). Each
takes keyword arguments and asks only for those it needs; the contract is
``learnerkit/hookspecs.py``. This module must stay light: ``learnerkit list-plugins`` imports
it, so import torch or TensorFlow only inside functions, if at all.
"""

from __future__ import annotations

import attrs
from learnerkit import ${imports}
from learnerkit.fields import ${field_imports}${replay_import}

__all__ = ["${hps}", "algorithm"]


@attrs.frozen(kw_only=True)
class ${hps}(${settings}):
    """${title}'s hyperparameters. The settings the ${loop} loop reads come with the base
    class (``learnerkit.${settings}``); add yours with a validator and a docstring each, and
    change a setting's default by redefining it."""

    learning_rate: float = attrs.field(default=3e-4, converter=float, validator=positive)
    """Step size of the optimizer."""
${fields}

@hookimpl
def configure_optimizers(module, hyperparameters, ops):
    """Build the module's optimizer (called once per module when the Learner is built).

    Fill in: another optimizer, or a mapping of name to optimizer over shares of the
    parameters (``ops.adam(module, lr, parameters=...)``). Delete this hook to get the
    host's default, Adam at ``learning_rate``.
    """
    return ops.adam(module, hyperparameters.learning_rate)


@hookimpl
def compute_loss(module, hyperparameters, batch, fwd_out, ops):
    """The loss of one minibatch (called for every minibatch of every epoch).

    Fill in: your algorithm's loss, written with ``ops`` so that it runs on torch and
    TensorFlow. ``batch`` holds the columns in ``required_columns`` (and whatever else the
    loop gives: the docs' "Training loops" page); ``fwd_out`` the module's forward pass
    (``action_dist_inputs``, ``vf_preds``). Return ``"total_loss"`` and any scalar
    statistics to report.
    """
${loss}

@hookimpl
def additional_update(hyperparameters, state, timestep):
    """A non-gradient update per module, once per iteration: schedules, adaptive
    coefficients, target networks (``learner.update_target_module``).

    Fill in: change ``state`` (from ``initial_state``) in place, and return statistics to
    report; ``timestep`` counts env steps sampled. Delete the hook if there is nothing to do.
    """
    return {"timestep": float(timestep)}


@hookimpl
def compile_results(metrics):
    """The statistics ``update()`` returns for a module, from the means of what
    ``compute_loss`` returned.

    Fill in: statistics derived from them. Delete the hook to keep the host's default
    (``metrics`` with the learning rate and the sample count).
    """
    return {"${name}_total_loss": metrics["total_loss"]}


algorithm = Algorithm(
    name="${name}",
    hyperparameters=${hps},
    frameworks=("torch", "tf"),
    required_columns=(
${columns}
    ),
    training_loop="${loop}",
    requires_api=">=0.2",
    description="${title} (written by learnerkit new-plugin; fill in)",
)
''')

PYPROJECT = Template("""[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "${dist}"
version = "0.1.0"
description = "${title}: a learnerkit algorithm plugin."
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["learnerkit>=0.2", "attrs>=23.1"]

[project.optional-dependencies]
test = ["pytest>=8"]

# The door learnerkit finds algorithms by: `learnerkit list-plugins` shows "${name}".
[project.entry-points."learnerkit.algorithms"]
${name} = "${package}"

[tool.setuptools]
packages = ["${package}"]
""")

README = Template("""# ${dist}

${title}, a [learnerkit](https://github.com/learnerkit/learnerkit) algorithm plugin trained
by the `${loop}` loop (hyperparameters: `${package}.${hps}`, on `learnerkit.${settings}`).

```bash
pip install -e .            # then `learnerkit list-plugins` shows ${name}
pytest tests                # the plugin contract (learnerkit.testing)
learnerkit train ${name} ${train_args}
```

What to fill in is in each hook's docstring in `${package}/__init__.py`; the contract is
learnerkit's `hookspecs.py` (the docs' hook reference), the settings the loop reads are on
the docs' "Training loops" and "Settings reference" pages.
""")

TESTS = Template('''"""${title} meets the learnerkit plugin contract (``learnerkit.testing``), on
each framework it declares. Uncomment the opt-in checks when the algorithm is ready: they
take seconds."""

from learnerkit.testing import AlgorithmContract


class Test${hps_base}Contract(AlgorithmContract):
    algorithm = "${name}"
${extra}    # ray_learner_group = ("torch",)  # a LearnerGroup of 2 Ray learners stays identical
${tiny}''')

NO_VALUE_TOWER = (
    "    # The starting loss trains the policy only: the default module's value tower keeps\n"
    "    # its weights. Remove this once your loss (or module) trains every parameter.\n"
    '    allow_no_gradient = ("vf.*",)\n'
)
TINY_TASK = """    # learns_tiny_task = ("torch",)  # learns the two-state task in 20,000 env steps
"""


def loops_with_a_template() -> list[str]:
    """The installed training loops ``write_plugin`` has a starting loss for."""
    names = []
    for row in list_training_loops():
        info = get_training_loop(row.name) if row.status == "ok" else None
        if info is not None and _template_base(info.settings) is not None:
            names.append(row.name)
    return names


def _template_base(settings_class: type) -> type | None:
    return next((base for base in TEMPLATED if issubclass(settings_class, base)), None)


def write_plugin(name: str, loop: str | None = None, directory: str | Path = ".") -> Path:
    """Write the package ``learnerkit-NAME``, trained by the installed training loop
    ``loop`` (None: the first with on-policy settings), under ``directory`` and return its
    path. Refuses a name that is not a lower-case Python identifier or that an installed
    plugin has, a loop that is not installed or has no template, and a package directory
    that exists."""
    if not NAME.match(name):
        raise ConfigError(
            f"plugin name {name!r} must be a lower-case Python identifier (letters, digits, "
            "underscores, starting with a letter), like 'a2c' or 'my_ppo'"
        )
    taken = {row.name: row.package for row in list_plugins()}
    if name in taken:
        raise ConfigError(
            f"an installed plugin is called {name!r} already (package {taken[name]}): "
            "pick another name; two plugins of one name both fail to load"
        )
    templated = loops_with_a_template()
    if loop is None:
        loop = next(
            (n for n in templated if issubclass(get_training_loop(n).settings, TEMPLATED[0])),
            None,
        )
    if loop not in templated:
        raise ConfigError(
            f"--loop must name an installed training loop with a template, one of "
            f"{templated}; got {loop!r} (a template exists for loops whose settings derive "
            f"from {', '.join(base.__name__ for base in TEMPLATED)})"
        )
    base = _template_base(get_training_loop(loop).settings)
    dist, package = f"learnerkit-{name.replace('_', '-')}", f"learnerkit_{name}"
    root = Path(directory) / dist
    if root.exists():
        raise ConfigError(f"{root} exists; remove it or pick another name or --dir")
    columns, fields, loss = LOSSES[base.__name__]
    replay = base is settings.ReplaySettings
    offline = base is settings.OfflineSettings
    values = {
        "name": name,
        "title": name.upper() if len(name) <= 4 else name.replace("_", " ").title(),
        "loop": loop,
        "dist": dist,
        "package": package,
        "settings": base.__name__,
        "hps": f"{_camel(name)}Hyperparameters",
        "hps_base": _camel(name),
        "imports": ", ".join(
            (["PER_ROW"] * replay) + sorted(["Algorithm", "Columns", base.__name__, "hookimpl"])
        ),
        "fields": fields,
        "field_imports": "non_negative, positive" if fields else "positive",
        "replay_import": "\nfrom learnerkit.replay import ReplayColumns" if replay else "",
        "loss": loss,
        "columns": "\n".join(
            f"        {'ReplayColumns' if c in ('DISCOUNTS', 'WEIGHTS') else 'Columns'}.{c},"
            for c in columns
        ),
        "train_args": "--dataset DATASET_ID" if offline else "--env CartPole-v1",
        "extra": NO_VALUE_TOWER if offline or replay else "",
        "tiny": "" if offline else TINY_TASK,
    }
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{package}/__init__.py": MODULE,
        f"tests/test_{name}.py": TESTS,
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.substitute(values))
    return root


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))
