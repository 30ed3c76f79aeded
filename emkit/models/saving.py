"""Load a ``.keras`` model that may hold emkit's custom layers.

Saving is Keras's own ``model.save(path)``; loading goes through here so that
the custom layers (:class:`~emkit.models.layers.DilatedMaxPooling`,
:class:`~emkit.models.spatial_transformer.SpatialTransformer`,
:class:`~emkit.models.aligned.SectionAligner`) are registered
before Keras reads the file.
"""

from __future__ import annotations

import os

import keras

from emkit.errors import InputError, MissingDataError
from emkit.models.aligned import SectionAligner
from emkit.models.layers import DilatedMaxPooling
from emkit.models.spatial_transformer import SpatialTransformer

# Registered name -> class, for files whose layers were saved by emkit.
CUSTOM_OBJECTS = {
    "emkit>DilatedMaxPooling": DilatedMaxPooling,
    "emkit>SpatialTransformer": SpatialTransformer,
    "emkit>SectionAligner": SectionAligner,
}


def load_model(path: str | os.PathLike, *, compile: bool = True) -> keras.Model:
    """Load a model saved with ``model.save(path)``.

    Args:
        path: A ``.keras`` file.
        compile: Restore the optimizer and loss too, when they were saved.
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise InputError(f"path: expected a .keras file, got {path!r}")
    if not os.path.exists(path):
        raise MissingDataError(f"path: no model file at {path!r}")
    return keras.saving.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=compile)


__all__ = ["CUSTOM_OBJECTS", "load_model"]
