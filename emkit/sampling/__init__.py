"""Sampling: training patches, validation and inference tiles, shaped by the model.

* :class:`PatchSampler` (a ``keras.utils.PyDataset``): random augmented
  ``(input, target, weight)`` batches, reproducible per (seed, epoch, index) whatever the
  number of workers.
* :class:`ValidationSampler`: whole validation sections as batches, no augmentation,
  every voxel counted once.
* :func:`tile_blocks`, :func:`iter_input_batches`: the blocks and input batches a
  predictor runs the model on.
* :func:`model_shapes`: the input and output windows, asked of a built model.

Stage order: targets and augment come before sampling; models, training and inference
come after it and may use it.

>>> from emkit.sampling import tile_blocks
>>> len(tile_blocks((2, 10, 10), (1, 6, 6), (1, 4, 4)))
18
"""

from emkit.sampling.crops import Locations
from emkit.sampling.sampler import PatchSampler, Sample, measure_class_frequency, read_ids
from emkit.sampling.shapes import model_shapes, shape_model
from emkit.sampling.targets import (
    TargetSpec,
    class_weights,
    labels_to_ids,
    make_targets,
    make_weights,
)
from emkit.sampling.tiles import Block, iter_input_batches, read_input, tile_blocks, tile_sections
from emkit.sampling.validation import ValidationSampler

__all__ = [
    "Block",
    "Locations",
    "PatchSampler",
    "Sample",
    "TargetSpec",
    "ValidationSampler",
    "class_weights",
    "iter_input_batches",
    "labels_to_ids",
    "make_targets",
    "make_weights",
    "measure_class_frequency",
    "model_shapes",
    "read_ids",
    "read_input",
    "shape_model",
    "tile_blocks",
    "tile_sections",
]
