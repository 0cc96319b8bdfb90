"""The default modules' ``model_config``: its keys, their defaults, and their validation.

Framework-neutral (no torch, no TensorFlow), so that both default modules share one
definition and a bad config fails the same way in either framework. Public: a custom
module may accept the same keys, or check its own the same way (``resolve_model_config``),
and env runners read the
default module's layout from it without importing a framework. Image observations
(``conv_filters``, ``conv_activation``, and their defaults by image size) are resolved by
``learnerkit.conv_encoders.module_config_for``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from learnerkit.errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "MODEL_CONFIG_DEFAULTS",
    "burn_in_of",
    "check_fragments_hold_sequences",
    "common_sequence_length",
    "refuse_recurrent",
    "resolve_model_config",
    "sequence_length_of",
]

MODEL_CONFIG_DEFAULTS: dict[str, Any] = {
    "hiddens": (64, 64),
    "activation": "tanh",
    "vf_share_layers": False,
    "initial_log_std": 0.0,
    "conv_filters": None,  # None: from the observation space (learnerkit.conv_encoders)
    "conv_activation": "relu",
    # Recurrent modules (RLlib's names): the encoder feeds an LSTM of ``lstm_cell_size``
    # units, which feeds the policy and value heads; trained on sequences of
    # ``max_seq_len`` steps. See docs/guides/recurrent.md.
    "use_lstm": False,
    "lstm_cell_size": 256,
    "max_seq_len": 20,
    "lstm_use_prev_action": False,
    "lstm_use_prev_reward": False,
    # The first ``lstm_burn_in`` steps of each training sequence only warm the state up
    # from the recorded one (R2D2's burn-in; RLlib's R2D2 calls it ``replay_burn_in``):
    # no loss or statistic counts them (``Columns.LOSS_MASK``).
    "lstm_burn_in": 0,
}
ACTIVATIONS = frozenset({"tanh", "relu", "elu", "silu"})
"""Activation names every backend's default module provides."""


def resolve_model_config(
    model_config: Mapping[str, Any],
    defaults: Mapping[str, Any] = MODEL_CONFIG_DEFAULTS,
    *,
    module: str = "the default module",
) -> dict[str, Any]:
    """Defaults filled in; an unknown key or activation is a ConfigError naming the choices.
    A module of its own passes its keys' ``defaults`` (with an ``"activation"``) and its
    name for the errors, as DQN's Q-network does."""
    unknown = sorted(set(model_config) - set(defaults))
    if unknown:
        raise ConfigError(
            f"unknown model_config key(s) {unknown} for {module}; known: {sorted(defaults)}"
        )
    config = {**defaults, **model_config}
    for key in ("activation", "conv_activation"):
        if key in config and config[key] not in ACTIVATIONS:
            raise ConfigError(
                f"model_config[{key!r}] must be one of {sorted(ACTIVATIONS)}, got {config[key]!r}"
            )
    hiddens = config.get("hiddens", ())  # a module of its own may not have this key
    if not isinstance(hiddens, (list, tuple)) or not all(
        isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in hiddens
    ):
        raise ConfigError(
            "model_config['hiddens'] must be a list of layer sizes, each an int >= 1 (e.g. "
            f"[64, 64]; [] for none), got {hiddens!r}"
        )
    for key in ("lstm_cell_size", "max_seq_len"):
        value = config.get(key, 1)  # a module of its own may not have these keys
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"model_config[{key!r}] must be a positive int, got {value!r}")
    for key in ("use_lstm", "lstm_use_prev_action", "lstm_use_prev_reward"):
        if not isinstance(config.get(key, False), bool):
            raise ConfigError(f"model_config[{key!r}] must be True or False, got {config[key]!r}")
    _check_burn_in(config)
    return config


def _check_burn_in(config: Mapping[str, Any]) -> None:
    burn_in = config.get("lstm_burn_in", 0)
    if isinstance(burn_in, bool) or not isinstance(burn_in, int) or burn_in < 0:
        raise ConfigError(f"model_config['lstm_burn_in'] must be an int >= 0, got {burn_in!r}")
    if not burn_in:
        return
    if not config.get("use_lstm", False):
        raise ConfigError(
            f"model_config['lstm_burn_in']={burn_in} warms up a recurrent module's state, but "
            "use_lstm is False: set use_lstm=True, or drop lstm_burn_in"
        )
    seq_len = config.get("max_seq_len", MODEL_CONFIG_DEFAULTS["max_seq_len"])
    if burn_in >= seq_len:
        raise ConfigError(
            f"model_config['lstm_burn_in']={burn_in} leaves no step of a sequence of "
            f"max_seq_len={seq_len} to train on: make lstm_burn_in smaller than max_seq_len "
            f"(or raise max_seq_len above {burn_in})"
        )


def sequence_length_of(model_config: Mapping[str, Any]) -> int | None:
    """The length of the sequences a module of ``model_config`` trains on: ``max_seq_len``
    for a recurrent one (``use_lstm``), None for a feed-forward one (rows train alone).
    What a loop passes as ``Learner.update(..., sequence_length=...)``."""
    if not model_config.get("use_lstm", False):
        return None
    return int(model_config.get("max_seq_len", MODEL_CONFIG_DEFAULTS["max_seq_len"]))


def burn_in_of(model_config: Mapping[str, Any]) -> int:
    """How many steps at the start of each training sequence of a module of
    ``model_config`` only warm up its state (``lstm_burn_in``; 0 for a feed-forward one)."""
    if sequence_length_of(model_config) is None:
        return 0
    return int(model_config.get("lstm_burn_in", 0))


def common_sequence_length(model_configs: Mapping[str, Mapping[str, Any]]) -> int | None:
    """The sequence length one update of these modules trains with (``Learner.update``
    takes one): the recurrent modules' ``max_seq_len``, which must agree (a ConfigError
    naming them otherwise); None when none is recurrent."""
    lengths = {m: sequence_length_of(c) for m, c in model_configs.items()}
    found = {length for length in lengths.values() if length is not None}
    if len(found) > 1:
        detail = {m: length for m, length in lengths.items() if length is not None}
        raise ConfigError(
            f"recurrent modules train on sequences of one length per update, but their "
            f"max_seq_len differ: {detail}; give them one max_seq_len"
        )
    return found.pop() if found else None


def check_fragments_hold_sequences(
    model_configs: Mapping[str, Mapping[str, Any]], rollout_fragment_length: int
) -> None:
    """A ConfigError unless every recurrent module's ``max_seq_len`` divides the fragment
    length: a loop cuts each env's fragment into whole sequences, none straddling two."""
    for module_id, model_config in model_configs.items():
        seq_len = sequence_length_of(model_config)
        if seq_len is not None and rollout_fragment_length % seq_len:
            raise ConfigError(
                f"module {module_id!r} is recurrent with max_seq_len={seq_len}, which does not "
                f"divide rollout_fragment_length={rollout_fragment_length}: fragments are cut "
                "into whole sequences; make rollout_fragment_length a multiple of max_seq_len"
            )


def refuse_recurrent(model_configs: Mapping[str, Mapping[str, Any]], loop: str) -> None:
    """A ConfigError for a recurrent module in ``loop`` (its class name), which trains rows
    one by one (the offline and replay loops): it would train without its state."""
    recurrent = sorted(m for m, config in model_configs.items() if sequence_length_of(config))
    if recurrent:
        raise ConfigError(
            f"modules {recurrent} are recurrent (use_lstm), but {loop} trains rows one by "
            "one, without their state: train recurrent modules with the "
            "'on_policy' or 'async' loop (PPO, IMPALA, APPO), or set use_lstm=False"
        )
