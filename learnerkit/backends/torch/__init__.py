"""The torch backend (see ``learnerkit.backends``)."""
