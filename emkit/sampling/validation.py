"""Whole validation volumes as Keras batches: no augmentation, every voxel once."""

from __future__ import annotations

import math

import numpy as np

from emkit.errors import InputError
from emkit.sampling.sampler import LabelledVolume, dataset_volumes, read_ids
from emkit.sampling.targets import class_weights, make_targets, make_weights
from emkit.sampling.tiles import read_input, tile_sections


class ValidationSampler(LabelledVolume):
    """Batches ``(x, y, w)`` that tile validation sections, for ``fit(validation_data=)``.

    The same targets and weights as :class:`~emkit.sampling.PatchSampler`, without
    augmentation, and with weight 0 on voxels that an earlier block already covered
    (tiles overlap at the volume's end) or that lie outside the volume, so that the
    validation loss is a per-voxel mean over the whole validation data. Blocks whose
    output window holds no labelled section are skipped. The last batch may be smaller.

    Args:
        raw, labels, model, target, offsets, thickness, label_kind, unlabelled_value,
            mask, labelled_sections, workers, use_multiprocessing, max_queue_size: as for
            :class:`~emkit.sampling.sampler.LabelledVolume`.
        sections: the validation sections (default: all).
        class_frequency: boundary fraction per channel to weight classes with (pass the
            training sampler's ``class_frequency``); None: no class weights.
        batch_size: blocks per batch.
        **volume: the :class:`~emkit.sampling.sampler.LabelledVolume` arguments.
    """

    def __init__(self, raw, labels, model, *, sections=None, class_frequency=None, **volume):
        super().__init__(raw, labels, model, **volume)
        out = self.shapes.output_zyx
        blocks = tile_sections(raw.shape, self.shapes.input_zyx, out, sections=sections)
        if self.labelled_sections is not None:
            labelled = set(self.labelled_sections)
            blocks = [
                b for b in blocks
                if labelled.intersection(range(b.output_start[0], b.output_start[0] + out[0]))
            ]
        if not blocks:
            raise InputError("no validation block holds a labelled section")
        self.blocks = blocks
        self.class_frequency = class_frequency
        self._weights = None if class_frequency is None else class_weights(class_frequency)

    @classmethod
    def from_dataset(cls, dataset, model, *, sections=None, in_memory=True, **kwargs):
        """A validation sampler over a data set's ``sections`` (default: its validation ones).

        Args:
            dataset: the data set (raw, labels, mask, label kind, unlabelled value and
                labelled sections are taken from it).
            model: a built Keras model.
            sections: the sections to cover; None: the data set's validation sections,
                or all when it has none.
            in_memory: read the volumes into memory first.
            **kwargs: the other :class:`ValidationSampler` arguments.
        """
        if sections is None:
            sections = dataset.validation_sections or None
        raw, labels, mask = dataset_volumes(dataset, kwargs, in_memory=in_memory)
        return cls(raw, labels, model, mask=mask, sections=sections, **kwargs)

    def __len__(self) -> int:
        return math.ceil(len(self.blocks) / self.batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of a validation sampler with {len(self)} batches")
        chunk = self.blocks[index * self.batch_size:(index + 1) * self.batch_size]
        shapes, spec = self.shapes, self.spec
        x = np.empty((len(chunk), *shapes.input_shape, 1), np.float32)
        y = np.empty((len(chunk), *shapes.output_shape, spec.channels), np.float32)
        w = np.empty_like(y)
        for j, block in enumerate(chunk):
            x[j, ..., 0] = self._input(block)
            y[j], w[j] = self.target(block)
        return x, y, w

    def _input(self, block):
        window = read_input(self.raw, block, self.shapes.input_zyx)
        return window[0] if self.shapes.ndim == 2 else window

    def target(self, block):
        """Target and weight of one block (weight 0 outside the voxels it owns)."""
        out = self.shapes.output_zyx
        ctx = self.spec.context
        box = tuple(o + 2 * c for o, c in zip(out, ctx))
        start = tuple(s - c for s, c in zip(block.output_start, ctx))
        ids = read_ids(
            self.labels, start, box, self.spec, run=block.bounds, mask=self.mask,
            labelled_sections=self.labelled_sections,
        )
        target, known = make_targets(ids, self.spec, out)
        weight = make_weights(target, known, self.spec, self._weights)
        owned = np.zeros(out, dtype=np.float32)
        owned[tuple(
            slice(o.start - s, o.stop - s) for o, s in zip(block.owned, block.output_start)
        )] = 1
        owned = owned[0] if self.shapes.ndim == 2 else owned
        return target, weight * owned[..., None]
