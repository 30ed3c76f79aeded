"""The image-transformation stage: network architectures for boundaries and affinities.

A network takes ``(batch, z, y, x, channels)`` (or ``(batch, y, x, channels)`` in
2D) and outputs sigmoid maps: 1 channel of boundaries, or 3 or more channels of
affinities (nearest-neighbour z, y, x first, then long-range).

- :mod:`~emkit.models.convnet`, :mod:`~emkit.models.unet`,
  :mod:`~emkit.models.rsunet`: one folder per model family, each with its spec
  (``spec.py``), Keras builder (``build.py``) and presets (``presets.py``); the
  convnet folder also holds the dense form of the pooled patch classifiers.
- :mod:`~emkit.models.spec`: what every family's spec shares (base class, checks,
  YAML keys <-> spec).
- :mod:`~emkit.models.architectures`: the registry: ``FAMILIES`` (one line per
  family), ``ARCHITECTURES`` (every preset) and :func:`build_model`.
- :mod:`~emkit.models.shapes`: field of view, valid input sizes and output
  sizes, from a spec or from a built model.
- :mod:`~emkit.models.spatial_transformer`: a spatial transformer layer.
- :mod:`~emkit.models.aligned`: a learned aligner in front of a 3D network
  (``model.align``, the thesis's end-to-end setting).

The specs, presets, registry and shapes modules import no Keras; the names that need
Keras are imported from here on first use.

>>> from emkit.models import ARCHITECTURES, field_of_view
>>> field_of_view(ARCHITECTURES["n4"])
(95, 95)
"""

from __future__ import annotations

import importlib

from emkit.models.architectures import (
    ARCHITECTURES,
    DESCRIPTIONS,
    FAMILIES,
    build_model,
    dict_to_spec,
    get_spec,
)
from emkit.models.convnet import ConvNetSpec, LayerSpec
from emkit.models.rsunet import RSUNetSpec
from emkit.models.shapes import (
    Geometry,
    field_of_view,
    geometry,
    is_valid_input_shape,
    model_geometry,
    nearest_valid_input_shape,
    output_shape,
    output_stride,
    smallest_input_shape,
    valid_input_sizes,
)
from emkit.models.spec import spec_to_dict
from emkit.models.unet import UNetSpec

# Names that need Keras -> the module that defines them.
_LAZY = {
    "build_convnet": "emkit.models.convnet.build",
    "build_unet": "emkit.models.unet.build",
    "build_rsunet": "emkit.models.rsunet.build",
    "dense_model": "emkit.models.convnet.dense",
    "predict_patchwise": "emkit.models.convnet.dense",
    "with_input_shape": "emkit.models.convnet.dense",
    "DilatedMaxPooling": "emkit.models.layers",
    "SpatialTransformer": "emkit.models.spatial_transformer",
    "SectionAligner": "emkit.models.aligned",
    "build_aligned": "emkit.models.aligned",
    "bilinear_sample": "emkit.models.spatial_transformer",
    "load_model": "emkit.models.saving",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'emkit.models' has no attribute {name!r}")


__all__ = [
    "ARCHITECTURES",
    "DESCRIPTIONS",
    "FAMILIES",
    "ConvNetSpec",
    "DilatedMaxPooling",
    "Geometry",
    "LayerSpec",
    "RSUNetSpec",
    "SectionAligner",
    "SpatialTransformer",
    "UNetSpec",
    "bilinear_sample",
    "build_aligned",
    "build_convnet",
    "build_model",
    "build_rsunet",
    "build_unet",
    "dense_model",
    "dict_to_spec",
    "field_of_view",
    "geometry",
    "get_spec",
    "is_valid_input_shape",
    "load_model",
    "model_geometry",
    "nearest_valid_input_shape",
    "output_shape",
    "output_stride",
    "predict_patchwise",
    "smallest_input_shape",
    "spec_to_dict",
    "valid_input_sizes",
    "with_input_shape",
]
