"""The TensorFlow backend (see ``learnerkit.backends``)."""
