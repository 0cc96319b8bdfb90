"""Environments learnerkit ships, registered with gymnasium under ``learnerkit/`` ids when
this package is imported (env runners import it for such an id):

- ``learnerkit/PixelGrid-v0``: a 16x16 uint8 image task for pixel modules
  (``pixel_grid.PixelGrid``).
"""

from __future__ import annotations

import gymnasium

__all__ = ["PIXEL_GRID_ID"]

PIXEL_GRID_ID = "learnerkit/PixelGrid-v0"

if PIXEL_GRID_ID not in gymnasium.registry:
    gymnasium.register(PIXEL_GRID_ID, entry_point="learnerkit.envs.pixel_grid:PixelGrid")
