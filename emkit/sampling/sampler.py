"""The training patch sampler: random, augmented ``(input, target, weight)`` batches.

One sample, in order:

1. A generator from ``np.random.SeedSequence([seed, epoch, index, j])`` for sample
   ``j`` of batch ``index``: batches depend on (seed, epoch, index) only, never on
   which worker or thread made them, so 0, 1 or 8 workers give the same batches.
2. An output window is drawn (:class:`~emkit.sampling.crops.Locations`).
3. Raw is read on the input window plus the margins the augmentations declare; labels
   on the output window plus the targets' context plus the same margins. Nothing else
   is read or converted.
4. The augmentations run (:func:`emkit.augment.apply_augmentations`), cutting back
   after each one.
5. Targets and weights are computed from the *augmented* labels, on the output window.

Batches are ``x`` float32 of shape (B, Y, X, 1) or (B, Z, Y, X, 1) in [0, 1], and ``y``
and ``w`` float32 of shape (B, Y', X', C) or (B, Z', Y', X', C): the target and its
per-voxel weight (0 where the target is unknown; class-balanced if asked).

Weights are per voxel *and channel*, because affinity masks differ per offset. Keras'
built-in ``binary_crossentropy`` averages over the last axis before weighting, so it
takes these weights only when C = 1; for C > 1 use a loss that keeps the channels, e.g.
``lambda y, p: keras.losses.binary_crossentropy(y[..., None], p[..., None])``.

Keras' ``fit`` calls ``on_epoch_end`` once before the first epoch (after peeking at
batches 0 and 1 of epoch 0 to learn their shapes), so its first epoch draws with
``epoch=1``; the batches stay the same for any number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from emkit.augment import apply_augmentations, make_augmentations, plan_augmentations
from emkit.augment.base import check_int
from emkit.errors import InputError
from emkit.preprocess import raw_to_unit
from emkit.sampling.crops import Locations, pad_crop, read_crop
from emkit.sampling.shapes import model_shapes
from emkit.sampling.targets import (
    TargetSpec,
    boundary_fraction,
    class_weights,
    labels_to_ids,
    make_targets,
    make_weights,
)


@dataclass
class Sample:
    """One training sample, for previews and tests.

    Attributes:
        raw: ndarray of shape (Z, Y, X), float32, the (augmented) input window.
        target: ndarray of shape (Z', Y', X', C) or (Y', X', C).
        weight: ndarray of the shape of ``target``.
        ids: ndarray of shape (Z'', Y'', X''), the augmented label ids on the output
            window plus the target context.
        start: (z, y, x) of the output window in the volume, before augmentation.
    """

    raw: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    ids: np.ndarray
    start: tuple[int, int, int]


class LabelledVolume(keras.utils.PyDataset):
    """A labelled volume shaped for one model: what both samplers start from.

    Checks the volumes, reads the model's windows and the target it is trained on, and
    keeps the batch size; :class:`PatchSampler` and
    :class:`~emkit.sampling.validation.ValidationSampler` add how they pick windows.

    Args:
        raw: ndarray or lazy :class:`~emkit.io.Volume` of shape (Z, Y, X), the EM images
            (unsigned integers, or floats in [0, 1]). A 2D model reads single sections.
            In-memory arrays are fastest: crops are then views.
        labels: ndarray or Volume of shape (Z, Y, X), see ``label_kind``.
        model: a built Keras model: its ``input_shape`` and ``output_shape`` fix the
            windows (see :func:`~emkit.sampling.shapes.model_shapes`).
        target: ``"boundaries"`` or ``"affinities"``.
        offsets: affinity offsets, (dz, dy, dx) for 3D models and (dy, dx) for 2D ones;
            default nearest neighbours.
        thickness: boundary half-width for segmentation labels.
        label_kind: ``"segmentation"`` (ids) or ``"isbi"`` (0 = membrane, 255 = interior).
        unlabelled_value: the segmentation label meaning "not labelled", or None.
        mask: ndarray or Volume of shape (Z, Y, X): windows are centred where it is
            nonzero, and labels where it is 0 count as unknown.
        labelled_sections: for sparse labels, the labelled sections: every output window
            holds one, and labels elsewhere count as unknown.
        batch_size: samples (or blocks) per batch.
        workers, use_multiprocessing, max_queue_size: passed to Keras' ``PyDataset``.
    """

    def __init__(
        self,
        raw,
        labels,
        model,
        *,
        target: str = "boundaries",
        offsets=None,
        thickness: int = 1,
        label_kind: str = "segmentation",
        unlabelled_value: int | None = 0,
        mask=None,
        labelled_sections=None,
        batch_size: int = 1,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
    ):
        super().__init__(
            workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size
        )
        if labels is None:
            raise InputError(f"a {type(self).__name__} needs labels")
        self.raw, self.labels, self.mask = check_volumes(raw, labels, mask)
        self.labelled_sections = (
            None if labelled_sections is None else tuple(int(z) for z in labelled_sections)
        )
        self.shapes, self.spec = model_targets(
            model, target=target, offsets=offsets, thickness=thickness, label_kind=label_kind,
            unlabelled_value=unlabelled_value)
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)


class PatchSampler(LabelledVolume):
    """Random augmented patches of a labelled volume, shaped for one model.

    Args:
        raw, labels, model, target, offsets, thickness, label_kind, unlabelled_value,
            mask, labelled_sections, batch_size, workers, use_multiprocessing,
            max_queue_size: as for :class:`LabelledVolume`.
        sections: the sections (z) to sample from, e.g. a training split; a window never
            reads outside one run of consecutive sections.
        augment: augmentation entries (recipe dicts, names or objects), in order.
        max_defects: at most this many EM defects per sample (e.g. 1), or None.
        balance: weight boundary and interior to contribute equally (formula in
            :mod:`emkit.sampling.targets`).
        class_frequency: the boundary fraction per channel for ``balance``; measured on
            ``labels`` (within ``sections``) when None.
        batches_per_epoch: the value of ``len(sampler)``.
        seed: the seed of every sample's generator.
        epoch: the first epoch number (``on_epoch_end`` adds one).
        **volume: the :class:`LabelledVolume` arguments.
    """

    def __init__(
        self,
        raw,
        labels,
        model,
        *,
        sections=None,
        augment=(),
        max_defects: int | None = None,
        balance: bool = False,
        class_frequency=None,
        batches_per_epoch: int = 100,
        seed: int = 0,
        epoch: int = 0,
        **volume,
    ):
        super().__init__(raw, labels, model, **volume)
        mask = self.mask
        # Augmentations and the crops they need.
        out = self.shapes.output_zyx
        labels_window = tuple(o + 2 * c for o, c in zip(out, self.spec.context))
        self.augmentations = make_augmentations(augment)
        self.plan = plan_augmentations(
            self.augmentations, self.shapes.input_zyx, labels_window, max_defects=max_defects
        )
        raw_box, labels_box = self.plan.raw_shapes[0], self.plan.labels_shapes[0]
        if self.shapes.ndim == 2 and (raw_box[0] != 1 or labels_box[0] != 1):
            raise InputError(
                "a 2D model reads single sections, but the augmentations need "
                f"{raw_box[0]} sections of context (use elastic mode 'section')"
            )
        self._raw_offset = tuple((r - o) // 2 for r, o in zip(raw_box, out))
        self._labels_offset = tuple((b - o) // 2 for b, o in zip(labels_box, out))
        read_z = (
            max(self._raw_offset[0], 0),
            max(raw_box[0] - out[0] - self._raw_offset[0], 0),
        )
        self.locations = Locations(
            raw.shape, out, read_z, sections=sections,
            labelled_sections=self.labelled_sections, mask=mask,
        )
        # Sampling.
        self.batches_per_epoch = check_int(batches_per_epoch, "batches_per_epoch", minimum=1)
        self.seed = check_int(seed, "seed", minimum=0)
        self.epoch = check_int(epoch, "epoch", minimum=0)
        self.balance = bool(balance)
        self.class_frequency = None
        self._weights = None
        if self.balance:
            if class_frequency is None:
                class_frequency = measure_class_frequency(self)
            self.class_frequency = np.asarray(class_frequency, dtype=np.float64).reshape(-1)
            if self.class_frequency.size != self.spec.channels:
                raise InputError(
                    f"class_frequency needs {self.spec.channels} value(s), one per channel; "
                    f"got {class_frequency!r}"
                )
            self._weights = class_weights(self.class_frequency)

    @classmethod
    def from_dataset(cls, dataset, model, *, sections=None, in_memory=True, **kwargs):
        """A sampler over an :class:`~emkit.datasets.Dataset`.

        Takes raw, labels, mask, label kind, unlabelled value and labelled sections from
        the data set. ``in_memory`` reads the volumes once (crops are then views);
        otherwise every crop is read from the files.

        Args:
            dataset: the data set.
            model: a built Keras model.
            sections: the sections to sample, e.g. ``split_sections(dataset).train``.
            in_memory: read the volumes into memory first.
            **kwargs: the other :class:`PatchSampler` arguments.
        """
        raw, labels, mask = dataset_volumes(dataset, kwargs, in_memory=in_memory)
        return cls(raw, labels, model, mask=mask, sections=sections, **kwargs)

    # ------------------------------------------------------------------ PyDataset

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __getitem__(self, index):
        """Batch ``index`` of the current epoch: ``(x, y, w)``."""
        if not 0 <= index < self.batches_per_epoch:
            raise IndexError(f"batch {index} of a sampler with {self.batches_per_epoch} batches")
        ndim = self.shapes.ndim
        out_shape = self.shapes.output_shape
        x = np.empty((self.batch_size, *self.shapes.input_shape, 1), np.float32)
        y = np.empty((self.batch_size, *out_shape, self.spec.channels), np.float32)
        w = np.empty_like(y)
        for j in range(self.batch_size):
            sample = self.sample(index, j)
            x[j, ..., 0] = sample.raw[0] if ndim == 2 else sample.raw
            y[j], w[j] = sample.target, sample.weight
        return x, y, w

    def on_epoch_end(self):
        """Moves to the next epoch: new samples, as reproducible as the last."""
        self.epoch += 1

    # ------------------------------------------------------------------ samples

    def rng(self, index: int, j: int, epoch: int | None = None) -> np.random.Generator:
        """The generator of sample ``j`` of batch ``index`` (of ``epoch``, default current).

        Args:
            index: the batch in the epoch.
            j: the sample in the batch.
            epoch: the epoch; None: the current one.

        Returns:
            A ``numpy.random.Generator`` seeded by ``(seed, epoch, index, j)``.
        """
        epoch = self.epoch if epoch is None else epoch
        return np.random.default_rng(np.random.SeedSequence([self.seed, epoch, index, j]))

    def sample(self, index: int, j: int = 0, *, epoch=None, augment: bool = True) -> Sample:
        """Sample ``j`` of batch ``index``; ``augment=False`` gives the same window bare.

        Args:
            index: the batch in the epoch.
            j: the sample in the batch.
            epoch: the epoch; None: the current one.
            augment: apply the augmentations (False: the same window, centre-cropped).

        Returns:
            A :class:`Sample`.
        """
        rng = self.rng(index, j, epoch)
        start = self.locations.draw(rng)
        raw, ids = self.read(start)
        if augment:
            raw, ids = apply_augmentations(self.plan, raw, ids, rng)
        else:
            raw = _centre(raw, self.plan.raw_shapes[-1])
            ids = _centre(ids, self.plan.labels_shapes[-1])
        target, known = make_targets(ids, self.spec, self.shapes.output_zyx)
        weight = make_weights(target, known, self.spec, self._weights)
        return Sample(raw=raw, target=target, weight=weight, ids=ids, start=start)

    def read(self, start):
        """Raw (float32 in [0, 1]) and label ids on the augmentation plan's boxes.

        Args:
            start: (z, y, x) of the output window.

        Returns:
            ``(raw, ids)`` of shapes ``plan.raw_shapes[0]`` and ``plan.labels_shapes[0]``.
        """
        raw_box, labels_box = self.plan.raw_shapes[0], self.plan.labels_shapes[0]
        raw_start = [s - o for s, o in zip(start, self._raw_offset)]
        data, pad = read_crop(self.raw, raw_start, raw_box)
        raw = raw_to_unit(pad_crop(data, pad, raw_box, mode="reflect"))
        # Labels: only inside the window's run of sections; 0 (unknown) elsewhere.
        run = self.locations.run_bounds(start[0])
        labels_start = [s - o for s, o in zip(start, self._labels_offset)]
        ids = read_ids(
            self.labels, labels_start, labels_box, self.spec, run=run, mask=self.mask,
            labelled_sections=self.labelled_sections,
        )
        return raw, ids


def check_volumes(raw, labels, mask):
    """``(raw, labels, mask)`` after checking that raw is (z, y, x) and the others (or
    None) have its shape.

    Args:
        raw: ndarray or lazy volume of shape (Z, Y, X).
        labels: ndarray or lazy volume of shape (Z, Y, X), or None.
        mask: ndarray or lazy volume of shape (Z, Y, X), or None.
    """
    if getattr(raw, "ndim", len(getattr(raw, "shape", ()))) != 3:
        raise InputError(f"raw must be a (z, y, x) volume, got shape {raw.shape}")
    for role, array in (("labels", labels), ("mask", mask)):
        if array is not None and tuple(array.shape) != tuple(raw.shape):
            raise InputError(
                f"{role} have shape {tuple(array.shape)} but raw has {tuple(raw.shape)}"
            )
    return raw, labels, mask


def model_targets(model, *, target, offsets, thickness, label_kind, unlabelled_value):
    """The model's shapes and the target it is trained on, checked against each other.

    Args:
        model: a built Keras model.
        target, offsets, thickness, label_kind, unlabelled_value: the
            :class:`~emkit.sampling.targets.TargetSpec` fields.

    Returns:
        ``(Geometry, TargetSpec)``.
    """
    shapes = model_shapes(model)
    spec = TargetSpec(kind=target, ndim=shapes.ndim, offsets=offsets, thickness=thickness,
                      label_kind=label_kind, unlabelled_value=unlabelled_value)
    if spec.channels != shapes.out_channels:
        raise InputError(
            f"{target} with offsets {spec.offsets} give {spec.channels} "
            f"channel(s) but the model outputs {shapes.out_channels}"
        )
    return shapes, spec


def dataset_volumes(dataset, kwargs: dict, *, in_memory: bool):
    """A data set's ``(raw, labels, mask)``, read into memory if asked, with its label
    kind, unlabelled value and labelled sections set as defaults in ``kwargs``.

    Args:
        dataset: an :class:`~emkit.datasets.Dataset`.
        kwargs: the sampler's keyword arguments; ``label_kind``, ``unlabelled_value``
            and ``labelled_sections`` are set in it where missing (it is changed).
        in_memory: read the volumes into memory (ndarrays); False keeps them lazy.
    """
    def load(array):
        return np.asarray(array) if array is not None and in_memory else array

    kwargs.setdefault("label_kind", dataset.label_kind)
    kwargs.setdefault("unlabelled_value", dataset.unlabelled_value)
    kwargs.setdefault("labelled_sections", dataset.labelled_sections)
    return tuple(load(a) for a in (dataset.raw, dataset.labels, dataset.mask))


def read_ids(labels, start, box, spec, *, run=None, mask=None, labelled_sections=None):
    """Label ids (0 = unknown) on a box that may reach outside the volume.

    Args:
        labels: ndarray or Volume of shape (Z, Y, X).
        start: (z, y, x) of the box's first voxel.
        box: (Z', Y', X') of the box.
        spec: the :class:`~emkit.sampling.targets.TargetSpec` (label kind, unlabelled value).
        run: (start, stop) of the sections that may be read (default: all).
        mask: None, or an array of shape (Z, Y, X); labels where it is 0 are unknown.
        labelled_sections: None, or the labelled sections; others are unknown.

    Returns:
        ndarray of shape ``box``, an unsigned dtype, 0 = unknown (see
        :func:`~emkit.sampling.targets.labels_to_ids`).
    """
    run = (0, labels.shape[0]) if run is None else run
    bounds = [run, (0, labels.shape[1]), (0, labels.shape[2])]
    data, pad = read_crop(labels, start, box, bounds=bounds)
    if data.size:
        known = None
        if mask is not None or labelled_sections is not None:
            lo = [s + p[0] for s, p in zip(start, pad)]
            region = tuple(slice(a, a + n) for a, n in zip(lo, data.shape))
            known = np.ones(data.shape, dtype=bool)
            if mask is not None:
                known &= np.asarray(mask[region]) != 0
            if labelled_sections is not None:
                z = np.arange(lo[0], lo[0] + data.shape[0])
                known &= np.isin(z, labelled_sections)[:, None, None]
        data = labels_to_ids(
            data, label_kind=spec.label_kind, unlabelled_value=spec.unlabelled_value, known=known
        )
    else:
        data = np.zeros([0] * 3, dtype=np.uint8)
    return pad_crop(data, pad, box, mode="constant")


def _centre(array, shape):
    starts = [(n - s) // 2 for n, s in zip(array.shape, shape)]
    return array[tuple(slice(a, a + s) for a, s in zip(starts, shape))]


def measure_class_frequency(sampler: PatchSampler, *, chunk: int = 8):
    """The boundary fraction per channel over the sampler's training labels.

    Every section the sampler may read is converted whole, in chunks of ``chunk``
    sections with the targets' z context, exactly as samples are (labels outside the
    run, mask or labelled sections are unknown; the volume's edge is unknown).

    Args:
        sampler: the sampler; its labels, mask, labelled sections, target spec and the
            runs of sections it may read.
        chunk: sections converted at a time.

    Returns:
        ndarray of shape (C,), float64.
    """
    spec = sampler.spec
    ctx = spec.context
    boundary = np.zeros(spec.channels)
    known_sum = np.zeros(spec.channels)
    runs = sorted(set(sampler.locations.runs))
    _, ny, nx = sampler.labels.shape
    for run_start, run_stop in runs:
        for z0 in range(run_start, run_stop, chunk):
            z1 = min(z0 + chunk, run_stop)
            box = (z1 - z0 + 2 * ctx[0], ny + 2 * ctx[1], nx + 2 * ctx[2])
            start = (z0 - ctx[0], -ctx[1], -ctx[2])
            ids = read_ids(
                sampler.labels, start, box, spec, run=(run_start, run_stop), mask=sampler.mask,
                labelled_sections=sampler.labelled_sections,
            )
            out = (z1 - z0, ny, nx)
            if spec.ndim == 2:
                for z in range(out[0]):
                    target, k = make_targets(ids[z:z + 1], spec, (1, ny, nx))
                    b, n = boundary_fraction(target, k, spec)
                    boundary += b
                    known_sum += n
            else:
                target, k = make_targets(ids, spec, out)
                b, n = boundary_fraction(target, k, spec)
                boundary += b
                known_sum += n
    if not known_sum.all():
        raise InputError("class balancing found a channel with no known voxel in the labels")
    return boundary / known_sum
