"""Inference: a trained model applied to whole volumes, tile by tile.

:func:`predict_volume` is the one call (the ``emkit predict`` command and the
training's validation callback use it)::

    from emkit.inference import predict_volume
    pred = predict_volume(model, raw)                   # (Z, Y, X, C) float32
    pred = predict_volume(model, raw, blend="valid", tta=True, offsets=[(1, 0, 0), (0, 1, 0), (0, 0, 1)])

    with create_output("pred.zarr:affs", (*raw.shape, 3), overwrite=True) as out:
        predict_volume(model, raw, out=out)             # out of core, (3, Z, Y, X) on disk

- :mod:`~emkit.inference.tiled`: :func:`plan_prediction` (tile sizes from
  the model) and :func:`predict_volume` (the loop).
- :mod:`~emkit.inference.tiling`: read and write regions, mirror padding and
  blending weights, plain NumPy; its docstring draws them.
- :mod:`~emkit.inference.tta`: test-time flips and transposes, affinity
  channels included.

Stage order: inference comes after models and sampling (it uses their shapes
and input scaling) and before postprocess. Importing this package imports no
Keras; running a model does.
"""

from emkit.inference._writer import check_output, create_output, disk_shape, to_disk_layout
from emkit.inference.plan import DEFAULT_TILE, PredictionPlan, plan_prediction
from emkit.inference.tiled import predict_volume
from emkit.inference.tiling import BLENDS, Tile, TileGrid, tile_grid
from emkit.inference.tta import dihedral_transforms, predict_tta

__all__ = [
    "BLENDS",
    "DEFAULT_TILE",
    "PredictionPlan",
    "Tile",
    "TileGrid",
    "check_output",
    "create_output",
    "dihedral_transforms",
    "disk_shape",
    "plan_prediction",
    "predict_tta",
    "predict_volume",
    "tile_grid",
    "to_disk_layout",
]
