"""Imports a name from where it was before it moved without a deprecation (0.1's
``learnerkit.specs.in_unit_interval``): written for another API."""

from learnerkit.specs import in_unit_interval  # noqa: F401
