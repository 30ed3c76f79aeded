"""The augmentation interface, parameter checks, and running a list of augmentations.

An augmentation is a small object with three methods:

* ``margin(shape)``: the context, in voxels on each side ``(z, y, x)``, that it needs
  around a centred crop of ``shape`` to produce that crop without edge effects (a
  rotation needs the corners, a warp its largest displacement). The sampler adds up the
  margins of the whole list, reads a larger crop, and cuts back after each step
  (gunpowder's habit: nobody computes margins by hand).
* ``draw(rng, shape)``: the random parameters of one application to an array of
  ``shape``, as a dict; all randomness comes from ``rng``.
* ``apply(raw, labels, params, out_shapes)``: the deterministic transform.

``aug(raw, labels, rng)`` draws and applies. Whether it runs at all is decided by the
caller with probability ``aug.p`` (:func:`apply_augmentations`), so ``aug(...)`` always
transforms.

Conventions shared by every augmentation:

* ``raw``: ndarray of shape (Z, Y, X), float32, intensities in [0, 1] (the sampler
  divides uint8 images by 255). Intensity augmentations clip to [0, 1]. A 2D sample is
  one section, shape (1, Y, X).
* ``labels``: ndarray of shape (Z', Y', X') of unsigned integers with 0 = unlabelled,
  or None. Spatial transforms move them with nearest-neighbour (order 0) sampling, fill
  uncovered voxels with 0 and never create new ids; intensity augmentations and most
  defects leave them untouched.
* ``labels`` cover a box *concentric* with ``raw``'s: smaller when valid convolutions
  shrink the output, slightly larger when a same-padded model's targets need a voxel
  of context beyond its input. ``raw.shape - labels.shape`` is even on every axis, and
  spatial transforms act about the common centre.
* Inputs are never modified; outputs may be views of them.
* ``apply`` may return arrays larger than ``out_shapes``; the caller cuts the centre.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import numpy as np

from emkit.errors import InputError

Shape = tuple[int, int, int]


class Augmentation:
    """Base class: stores ``p`` and the recipe keys; subclasses override the hooks.

    Subclasses take their recipe keys as keyword-only ``__init__`` arguments, call
    ``super().__init__(p=p)`` and keep every argument, so that :meth:`config` returns a
    dict that :func:`~emkit.augment.make_augmentations` turns back into an equal object.

    Attributes:
        name: the registry name, e.g. ``"elastic"``.
        is_defect: True for the EM defects (misalignment, missing sections, ...), which
            a sampler can limit to one per sample.
        p: probability that the augmentation runs on a sample.
    """

    name: str = ""
    is_defect: bool = False

    def __init__(self, *, p: float):
        self.p = check_probability(p, f"{self.name}: p")

    def margin(self, shape: Shape) -> Shape:
        """Context (z, y, x) needed on each side of a centred crop of ``shape``."""
        del shape
        return (0, 0, 0)

    def draw(self, rng: np.random.Generator, shape: Shape) -> dict:
        """Random parameters for one application to a raw array of ``shape``.

        Args:
            rng: a ``numpy.random.Generator``, the only source of randomness.
            shape: (Z, Y, X) of the raw array that :meth:`apply` will get.

        Returns:
            A dict of parameters for :meth:`apply` (empty here).
        """
        del rng, shape
        return {}

    def apply(self, raw, labels, params: dict, out_shapes=None):
        """Transforms ``raw`` and ``labels`` with ``params``; see the module docstring.

        Args:
            raw: ndarray of shape (Z, Y, X), float32 in [0, 1].
            labels: ndarray of shape (Z', Y', X') concentric with ``raw``, or None.
            params: what :meth:`draw` returned.
            out_shapes: ``(raw_shape, labels_shape)`` of the centred crops the caller
                keeps, or None for everything. Only a hint: an augmentation may use it to
                skip work, and may return larger arrays.

        Returns:
            ``(raw, labels)``.
        """
        raise NotImplementedError

    def __call__(self, raw, labels, rng, *, out_shapes=None):
        """Draws parameters from ``rng`` and applies them (always; ``p`` is the caller's)."""
        return self.apply(raw, labels, self.draw(rng, tuple(raw.shape)), out_shapes)

    def config(self) -> dict:
        """The recipe entry of this augmentation: ``{"name": ..., "p": ..., ...}``."""
        keys = [k for k in inspect.signature(type(self).__init__).parameters if k != "self"]
        out = {"name": self.name}
        for key in keys:
            value = getattr(self, key)
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.config() == other.config()

    __hash__ = None


# ---------------------------------------------------------------------------- parameters


def check_probability(value, key: str) -> float:
    """``value`` as a float in [0, 1], or InputError naming ``key``.

    Args:
        value: the value to check (a bool is refused).
        key: the recipe key, for the error message.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise InputError(f"{key} must be a probability between 0 and 1, got {value!r}")
    if not 0 <= value <= 1:
        raise InputError(f"{key} must be a probability between 0 and 1, got {value}")
    return float(value)


def check_range(value, key: str, *, low=-math.inf, high=math.inf) -> tuple[float, float]:
    """A number (fixed) or ``[lo, hi]`` (uniform range) as ``(lo, hi)``, within bounds.

    Args:
        value: a number, or a list or tuple of two numbers with low <= high.
        key: the recipe key, for the error message.
        low: the smallest allowed value.
        high: the largest allowed value.

    Raises:
        InputError: ``value`` is not of that form, or lies outside ``[low, high]``.

    >>> check_range(4, "sigma"), check_range([2, 6], "sigma")
    ((4.0, 4.0), (2.0, 6.0))
    """
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        pair = (float(value), float(value))
    elif (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in value)
    ):
        pair = (float(value[0]), float(value[1]))
    else:
        raise InputError(f"{key} must be a number or a [low, high] pair, got {value!r}")
    if pair[0] > pair[1]:
        raise InputError(f"{key} must have low <= high, got {list(value)}")
    if pair[0] < low or pair[1] > high:
        raise InputError(f"{key} must lie within [{low}, {high}], got {value!r}")
    return pair


def check_int(value, key: str, *, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum``, or InputError naming ``key``.

    Args:
        value: the value to check (a bool or float is refused).
        key: the recipe key, for the error message.
        minimum: the smallest allowed value.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_choice(value, key: str, allowed) -> str:
    """``value`` if it is one of ``allowed``, else InputError naming ``key``.

    Args:
        value: the value to check.
        key: the recipe key, for the error message.
        allowed: the allowed values.
    """
    if value not in allowed:
        raise InputError(f"{key} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A uniform draw in ``bounds``; a fixed value when low == high (no draw is spent).

    Args:
        rng: a ``numpy.random.Generator``.
        bounds: ``(low, high)``, as :func:`check_range` returns it.
    """
    low, high = bounds
    return low if low == high else float(rng.uniform(low, high))


def map_ids_exactly(labels, transform):
    """Runs a nearest-neighbour ``transform`` on labels without losing large ids.

    Interpolating code (elasticdeform, SciPy) passes values through float64, which holds
    integers exactly only below 2**53. Larger ids (e.g. uint64 body ids) are renumbered
    to small ones, transformed, and mapped back. 0 stays 0.

    Args:
        labels: integer ndarray.
        transform: a function ndarray -> ndarray that only moves values (order 0).

    Returns:
        ``transform(labels)`` with the original ids.
    """
    if labels.dtype.itemsize < 8 or labels.size == 0 or int(labels.max()) < 2**53:
        return transform(labels)
    import fastremap

    small, mapping = fastremap.renumber(labels, preserve_zero=True)
    moved = transform(small)
    back = {v: k for k, v in mapping.items()}
    return fastremap.remap(moved, back, preserve_missing_labels=True).astype(labels.dtype)


# ---------------------------------------------------------------------------- shapes


def center_crop(array, shape):
    """The centred crop of ``shape`` of an array (a view).

    Args:
        array: ndarray of shape (Z, Y, X) (any number of axes).
        shape: the crop, no larger than ``array.shape`` on any axis.

    Returns:
        A view of ``array``; ``array`` itself when the shapes match.

    >>> center_crop(np.arange(5), (3,)).tolist()
    [1, 2, 3]
    """
    if array is None or tuple(array.shape) == tuple(shape):
        return array
    starts = [(n - s) // 2 for n, s in zip(array.shape, shape)]
    if any(s < 0 for s in starts):
        raise InputError(f"cannot cut a crop of shape {tuple(shape)} out of shape {array.shape}")
    return array[tuple(slice(a, a + s) for a, s in zip(starts, shape))]


def grow(shape, margin) -> Shape:
    """``shape`` plus ``margin`` on both sides of every axis.

    Args:
        shape: (Z, Y, X).
        margin: (z, y, x) voxels to add on each side.
    """
    return tuple(int(s) + 2 * int(m) for s, m in zip(shape, margin))


@dataclass(frozen=True)
class AugmentPlan:
    """The shapes a list of augmentations works on, for one input and output size.

    Attributes:
        augmentations: the augmentations, in order.
        raw_shapes: ``raw_shapes[k]`` is the raw shape before augmentation ``k``;
            ``raw_shapes[-1]`` is the shape wanted at the end. Read a crop of
            ``raw_shapes[0]``.
        labels_shapes: the same for the labels, or None when there are none.
        max_defects: at most this many EM defects per sample, or None for no limit.
    """

    augmentations: tuple
    raw_shapes: tuple[Shape, ...]
    labels_shapes: tuple[Shape, ...] | None
    max_defects: int | None = None

    @property
    def raw_margin(self) -> Shape:
        """Total extra context (z, y, x) on each side of the raw crop."""
        return tuple((a - b) // 2 for a, b in zip(self.raw_shapes[0], self.raw_shapes[-1]))


def plan_augmentations(augmentations, raw_shape, labels_shape=None, *, max_defects=None):
    """Works out, from the last augmentation back, how large a crop each one needs.

    Args:
        augmentations: a sequence of :class:`Augmentation`.
        raw_shape: (Z, Y, X) of the raw crop wanted at the end (the model input).
        labels_shape: (Z', Y', X') of the labels crop wanted at the end (the model output
            plus the context the targets need), concentric with ``raw_shape``; or None.
        max_defects: at most this many EM defects per sample (None: no limit).

    Returns:
        An :class:`AugmentPlan`.

    >>> from emkit.augment import Rotate90
    >>> plan_augmentations([Rotate90()], (1, 4, 6)).raw_shapes
    ((1, 6, 6), (1, 4, 6))
    """
    raw_shape = tuple(int(s) for s in raw_shape)
    if len(raw_shape) != 3:
        raise InputError(f"raw_shape must be (z, y, x), got {raw_shape}")
    if labels_shape is not None:
        labels_shape = tuple(int(s) for s in labels_shape)
        odd = [(r - s) % 2 for r, s in zip(raw_shape, labels_shape)]
        if len(labels_shape) != 3 or any(odd):
            raise InputError(
                f"labels_shape {labels_shape} must be (z, y, x) and differ from raw_shape "
                f"{raw_shape} by an even number on every axis (so that both crops share a "
                "centre)"
            )
    if max_defects is not None:
        max_defects = check_int(max_defects, "max_defects", minimum=0)
    augmentations = tuple(augmentations)
    raw_shapes, labels_shapes = [raw_shape], [labels_shape]
    for aug in reversed(augmentations):
        if not isinstance(aug, Augmentation):
            raise InputError(f"expected Augmentation objects, got {type(aug).__name__}")
        raw_shapes.insert(0, grow(raw_shapes[0], aug.margin(raw_shapes[0])))
        if labels_shape is not None:
            labels_shapes.insert(0, grow(labels_shapes[0], aug.margin(labels_shapes[0])))
    return AugmentPlan(
        augmentations,
        tuple(raw_shapes),
        tuple(labels_shapes) if labels_shape is not None else None,
        max_defects,
    )


def choose_augmentations(plan: AugmentPlan, rng: np.random.Generator) -> list[bool]:
    """Which augmentations of ``plan`` run on one sample: each with its ``p``.

    With ``plan.max_defects`` set, if more EM defects were chosen than allowed, a random
    subset of that size is kept (so no defect has priority by its place in the list).
    One uniform draw is spent per augmentation, whatever the outcome.

    Args:
        plan: from :func:`plan_augmentations`.
        rng: a ``numpy.random.Generator``.

    Returns:
        One bool per augmentation of the plan, in order: True where it runs.
    """
    chosen = [bool(rng.random() < aug.p) for aug in plan.augmentations]
    if plan.max_defects is not None:
        defects = [k for k, aug in enumerate(plan.augmentations) if chosen[k] and aug.is_defect]
        if len(defects) > plan.max_defects:
            keep = set(rng.choice(defects, size=plan.max_defects, replace=False).tolist())
            for k in defects:
                chosen[k] = k in keep
    return chosen


def apply_augmentations(plan: AugmentPlan, raw, labels, rng, *, chosen=None):
    """Runs the augmentations of ``plan`` on one sample and cuts the crops back.

    Args:
        plan: from :func:`plan_augmentations`.
        raw: ndarray of shape ``plan.raw_shapes[0]``, float32 in [0, 1].
        labels: ndarray of shape ``plan.labels_shapes[0]`` (unsigned, 0 = unlabelled), or
            None.
        rng: a ``numpy.random.Generator``; the only source of randomness.
        chosen: which augmentations run (default: :func:`choose_augmentations`).

    Returns:
        ``(raw, labels)`` of shapes ``plan.raw_shapes[-1]`` and ``plan.labels_shapes[-1]``.
    """
    if tuple(raw.shape) != plan.raw_shapes[0]:
        raise InputError(f"raw has shape {raw.shape}, the plan needs {plan.raw_shapes[0]}")
    if labels is not None and (
        plan.labels_shapes is None or tuple(labels.shape) != plan.labels_shapes[0]
    ):
        want = None if plan.labels_shapes is None else plan.labels_shapes[0]
        raise InputError(f"labels have shape {labels.shape}, the plan needs {want}")
    if chosen is None:
        chosen = choose_augmentations(plan, rng)
    for k, aug in enumerate(plan.augmentations):
        raw_out = plan.raw_shapes[k + 1]
        labels_out = None if labels is None else plan.labels_shapes[k + 1]
        if chosen[k]:
            raw, labels = aug(raw, labels, rng, out_shapes=(raw_out, labels_out))
        raw = center_crop(raw, raw_out)
        labels = center_crop(labels, labels_out)
    return raw, labels
