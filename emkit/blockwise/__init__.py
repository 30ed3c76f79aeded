"""Blockwise processing of volumes larger than memory, on Dask.

:func:`predict_blockwise` and :func:`segment_blockwise` cut a chunked Zarr or HDF5
volume into blocks, run one Dask task per block on a ``LocalCluster`` or on a running
scheduler, and write a chunked output whose chunks are the blocks::

    from emkit.blockwise import predict_blockwise, segment_blockwise
    predict_blockwise("model.keras", "raw.zarr:raw", "pred.zarr:affs", block_shape=64, workers=2)
    segment_blockwise("pred.zarr:affs", "seg.zarr:seg", block_shape=64, halo=8, workers=2)

A killed job, rerun with the same arguments, skips the blocks it finished.

- :mod:`~emkit.blockwise.grid`: the block grid, read (with context) and write regions.
- :mod:`~emkit.blockwise.store`: chunked inputs and outputs, the job folder and the
  atomic per-block completion markers.
- :mod:`~emkit.blockwise.cluster`: the only module that imports ``dask.distributed``.
- :mod:`~emkit.blockwise.predict`: blockwise prediction.
- :mod:`~emkit.blockwise.segment` and :mod:`~emkit.blockwise.stitch`: blockwise
  watershed, the stitched region graph, agglomeration and relabelling.
- :mod:`~emkit.blockwise.hierarchy`: the agglomeration of the stitched graph in a
  hierarchy of chunks (ABISS's scheme), with the merges of one whole-graph run.

Importing this package imports neither Dask's scheduler nor Keras.
"""

from emkit.blockwise.cluster import BlockFailed, connect
from emkit.blockwise.grid import Block, BlockGrid, block_grid
from emkit.blockwise.predict import predict_blockwise
from emkit.blockwise.segment import segment_blockwise

__all__ = [
    "Block",
    "BlockFailed",
    "BlockGrid",
    "block_grid",
    "connect",
    "predict_blockwise",
    "segment_blockwise",
]
