"""Load a ``.keras`` model that may hold emkit's custom layers.

Saving is Keras's own ``model.save(path)``; loading goes through here so that
the custom layers (:class:`~emkit.models.layers.DilatedMaxPooling`,
:class:`~emkit.models.spatial_transformer.SpatialTransformer`,
:class:`~emkit.models.aligned.SectionAligner`) are registered
before Keras reads the file.
"""

from __future__ import annotations

import os
import zipfile

import keras

from emkit.errors import EmkitError, InputError, MissingDataError
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

    Raises:
        MissingDataError: there is no file at ``path``.
        InputError: ``path`` is not a ``.keras`` file, or Keras cannot read it (not a
            zip archive, a truncated file, or a layer that Keras's safe mode refuses,
            such as a Python lambda: emkit never loads arbitrary code).
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise InputError(f"path: expected a .keras file, got {path!r}")
    if not os.path.exists(path):
        raise MissingDataError(f"path: no model file at {path!r}")
    if not zipfile.is_zipfile(path):
        raise InputError(f"'{path}' is not a Keras model file that emkit can load: "
                         "a .keras file is a zip archive, and this one is not")
    try:
        return keras.saving.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=compile)
    except (ValueError, OSError, zipfile.BadZipFile, KeyError, TypeError) as exc:
        if isinstance(exc, EmkitError):
            raise
        raise InputError(f"'{path}' is not a Keras model file that emkit can load: "
                         f"{_first_sentence(exc)}") from exc


def _first_sentence(exc: Exception, limit: int = 160) -> str:
    """The start of an exception's message, on one line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "safe_mode" in text and "Lambda" in text:
        return "it holds a Lambda layer, which Keras's safe mode refuses (arbitrary code)"
    cut = text.find(". ")
    text = text[: cut + 1] if 0 < cut < limit else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["CUSTOM_OBJECTS", "load_model"]
