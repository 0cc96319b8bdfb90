"""Broken plugins: each module fails to load in its own way."""
