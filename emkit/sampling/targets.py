"""Targets and weights for one sample, computed from (augmented) labels.

Labels travel through augmentation as *ids*: unsigned integers with 0 = unknown.

* ``label_kind="segmentation"``: object ids. The dataset's ``unlabelled_value`` (0 by
  default) becomes 0; with ``unlabelled_value=None`` every value is an object, 0
  included. Ids are renumbered per crop (uint8 or uint16 for any realistic crop, which
  keeps warps fast and exact).
* ``label_kind="isbi"`` (ISBI 2012: 0 = membrane, 255 = interior): 1 = membrane,
  2 = interior.

Everywhere, 0 also marks voxels outside the volume, outside the mask, in unlabelled
sections, or warped in from outside the crop.

Targets (channels last), with the weight mask that says where they are known:

``"boundaries"`` (1 channel, 1 = boundary)
    ISBI labels: the membrane map, known wherever the ids are nonzero. Segmentations:
    :func:`emkit.targets.seg_to_boundaries` with ``thickness``, in-plane; unknown on
    unlabelled voxels and on voxels within ``thickness`` of one (whether such a voxel
    is a boundary depends on what the unlabelled voxel is).
``"affinities"`` (one channel per offset)
    :func:`emkit.targets.seg_to_affinities`: masked where an edge touches an unknown
    voxel or leaves the crop. ISBI labels are first turned into the cell interiors'
    connected components (per crop), so membrane voxels are masked, as the foundation's
    conversion does.

Only the output window plus the context that the targets need is ever converted.

Class balancing (optional): with ``f`` the fraction of *boundary* voxels among the
known ones (for affinities, of edges with affinity 0, per channel), measured once over
the training labels, a known boundary voxel weighs ``0.5 / f`` and a known interior
voxel ``0.5 / (1 - f)``. Each class then carries half the total weight and the mean
weight of a known voxel stays 1. On ISBI 2012 (f = 0.224): 2.23 and 0.64.
"""

from __future__ import annotations

from dataclasses import dataclass

import fastremap
import numpy as np

from emkit.errors import InputError
from emkit.targets import (
    DEFAULT_OFFSETS,
    DEFAULT_OFFSETS_2D,
    boundaries_to_seg,
    seg_to_affinities,
    seg_to_boundaries,
)

TARGETS = ("boundaries", "affinities")
LABEL_KINDS = ("segmentation", "isbi")
MEMBRANE, INTERIOR = 1, 2  # ids of ISBI labels


@dataclass(frozen=True)
class TargetSpec:
    """What to train on, and how to read the labels.

    Attributes:
        kind: ``"boundaries"`` or ``"affinities"``.
        ndim: 2 (targets per section, (Y, X, C)) or 3 ((Z, Y, X, C)).
        offsets: affinity offsets, (dz, dy, dx) for 3D, (dy, dx) for 2D; None for the
            nearest neighbours. Ignored for boundaries.
        thickness: boundary half-width in pixels for segmentations (see
            :func:`emkit.targets.seg_to_boundaries`); ignored for ISBI labels, whose
            membranes are the target as drawn.
        label_kind: ``"segmentation"`` or ``"isbi"``.
        unlabelled_value: the label that means "not labelled" (segmentations), or None.
    """

    kind: str = "boundaries"
    ndim: int = 3
    offsets: tuple | None = None
    thickness: int = 1
    label_kind: str = "segmentation"
    unlabelled_value: int | None = 0

    def __post_init__(self):
        if self.kind not in TARGETS:
            raise InputError(f"target must be one of {', '.join(TARGETS)}; got {self.kind!r}")
        if self.label_kind not in LABEL_KINDS:
            raise InputError(
                f"label_kind must be one of {', '.join(LABEL_KINDS)}; got {self.label_kind!r}"
            )
        if self.ndim not in (2, 3):
            raise InputError(f"target ndim must be 2 or 3, got {self.ndim}")
        if isinstance(self.thickness, bool) or not isinstance(self.thickness, int) or (
            self.thickness < 0
        ):
            raise InputError(f"thickness must be an integer >= 0, got {self.thickness!r}")
        offsets = self.offsets
        if self.kind == "affinities":
            default = DEFAULT_OFFSETS if self.ndim == 3 else DEFAULT_OFFSETS_2D
            offsets = default if offsets is None else offsets
            try:
                offsets = tuple(tuple(int(v) for v in d) for d in offsets)
            except (TypeError, ValueError):
                raise InputError(f"offsets must be a list of integer tuples, got {offsets!r}")
            if not offsets or any(len(d) != self.ndim or not any(d) for d in offsets):
                raise InputError(
                    f"offsets of a {self.ndim}D model must be nonzero {self.ndim}-tuples "
                    f"({'(dz, dy, dx)' if self.ndim == 3 else '(dy, dx)'}), got {self.offsets!r}"
                )
        else:
            offsets = None
        object.__setattr__(self, "offsets", offsets)

    @property
    def channels(self) -> int:
        """Number of target channels."""
        return 1 if self.kind == "boundaries" else len(self.offsets)

    @property
    def context(self) -> tuple[int, int, int]:
        """Label voxels (z, y, x) needed on each side of the output window."""
        if self.kind == "affinities":
            reach = np.max(np.abs(np.array(self.offsets)), axis=0).tolist()
            return tuple(reach) if self.ndim == 3 else (0, *reach)
        if self.label_kind == "isbi":
            return (0, 0, 0)
        return (0, self.thickness, self.thickness)


# ---------------------------------------------------------------------------- labels -> ids


def labels_to_ids(labels, *, label_kind="segmentation", unlabelled_value=0, known=None):
    """A crop of labels as ids: small unsigned integers with 0 = unknown.

    Args:
        labels: ndarray of shape (Z, Y, X), integer labels as stored.
        label_kind: ``"segmentation"`` or ``"isbi"`` (0 = membrane, 255 = interior).
        unlabelled_value: for segmentations, the value that means unlabelled (None: none).
        known: optional bool ndarray of the same shape; False voxels become 0.

    Returns:
        ndarray of the same shape: uint8 for ISBI labels (1 = membrane, 2 = interior);
        for segmentations the smallest unsigned dtype that holds the renumbered ids
        (from 1 in order of first appearance), 0 unknown.

    >>> labels_to_ids(np.array([[[7, 0, 9, 7]]])).tolist()
    [[[1, 0, 2, 1]]]
    """
    if label_kind == "isbi":
        ids = np.where(labels == 0, MEMBRANE, INTERIOR).astype(np.uint8)
    else:
        labels = np.ascontiguousarray(labels)
        if labels.dtype.kind not in "biu":
            raise InputError(f"segmentation labels must be integers, got dtype {labels.dtype}")
        if labels.dtype.kind == "i" or labels.dtype == bool:
            labels = labels.astype(np.uint64)
        if unlabelled_value is None:
            ids, _ = fastremap.renumber(labels, preserve_zero=False)
        elif unlabelled_value == 0:
            ids, _ = fastremap.renumber(labels, preserve_zero=True)
        else:
            unlabelled = labels == unlabelled_value
            ids, _ = fastremap.renumber(labels, preserve_zero=False)
            ids[unlabelled] = 0
    if known is not None:
        ids = np.where(known, ids, 0).astype(ids.dtype, copy=False)
    return ids


# ---------------------------------------------------------------------------- targets


def make_targets(ids, spec: TargetSpec, out_shape):
    """Target and known-mask on the output window, from ids on the window plus context.

    Args:
        ids: ndarray of shape (Z, Y, X) from :func:`labels_to_ids`, covering the output
            window plus ``spec.context`` on each side (concentric).
        spec: the :class:`TargetSpec`.
        out_shape: the output window (Z, Y, X); Z = 1 for a 2D model.

    Returns:
        ``(target, known)``, float32 ndarrays of shape (Y, X, C) for a 2D spec or
        (Z, Y, X, C) for 3D, holding 0 and 1.
    """
    ctx = spec.context
    core = tuple(slice(c, c + n) for c, n in zip(ctx, out_shape))
    if tuple(n - 2 * c for n, c in zip(ids.shape, ctx)) != tuple(out_shape):
        raise InputError(
            f"ids of shape {ids.shape} do not cover the output window {tuple(out_shape)} "
            f"plus context {ctx}"
        )
    if spec.ndim == 2:
        ids, core = ids[0], core[1:]
    if spec.kind == "boundaries":
        if spec.label_kind == "isbi":
            target = ids[core] == MEMBRANE
            known = ids[core] != 0
        else:
            target = seg_to_boundaries(ids, thickness=spec.thickness)[core].astype(bool)
            labelled = (ids != 0).view(np.uint8)
            # Unknown: unlabelled voxels and voxels within `thickness` of one.
            known = seg_to_boundaries(labelled, thickness=spec.thickness)[core] == 0
        return (
            target[..., None].astype(np.float32),
            known[..., None].astype(np.float32),
        )
    seg = ids
    if spec.label_kind == "isbi":
        seg = boundaries_to_seg(ids != INTERIOR, per_section=True)
    affs, known = seg_to_affinities(seg, spec.offsets, dtype=np.float32)
    return affs[core], known[core]


def boundary_fraction(target, known, spec: TargetSpec):
    """Per-channel sums ``(boundary, known)`` of a target, for :func:`class_weights`.

    A boundary is a target of 1 for boundaries and an affinity of 0 for affinities.

    Args:
        target: ndarray of shape (..., C), as :func:`make_targets` returns it.
        known: ndarray of the shape of ``target``, 1 where the target is known.
        spec: the :class:`TargetSpec` (its ``kind``).

    Returns:
        ``(boundary, known)``, each ndarray of shape (C,), float64.
    """
    axes = tuple(range(target.ndim - 1))
    is_boundary = target if spec.kind == "boundaries" else 1 - target
    return (is_boundary * known).sum(axis=axes, dtype=np.float64), known.sum(
        axis=axes, dtype=np.float64
    )


def class_weights(frequency):
    """``(w_boundary, w_interior)`` per channel from boundary fractions ``f``.

    ``w_boundary = 0.5 / f`` and ``w_interior = 0.5 / (1 - f)``; a channel with f of 0
    or 1 (one class only) gets weight 1 for both.

    >>> [round(float(w[0]), 3) for w in class_weights([0.2])]
    [2.5, 0.625]
    """
    f = np.asarray(frequency, dtype=np.float64).reshape(-1)
    ok = (f > 0) & (f < 1)
    safe = np.where(ok, f, 0.5)
    w_boundary = np.where(ok, 0.5 / safe, 1.0).astype(np.float32)
    w_interior = np.where(ok, 0.5 / (1 - safe), 1.0).astype(np.float32)
    return w_boundary, w_interior


def make_weights(target, known, spec: TargetSpec, weights=None):
    """The sample weights: ``known``, times the class weight of each voxel if given.

    Args:
        target, known: from :func:`make_targets`.
        spec: the :class:`TargetSpec`.
        weights: None, or ``(w_boundary, w_interior)`` per channel from
            :func:`class_weights`.

    Returns:
        float32 ndarray of the shape of ``target``.
    """
    if weights is None:
        return known
    w_boundary, w_interior = weights
    is_boundary = target if spec.kind == "boundaries" else 1 - target
    return known * (w_interior + (w_boundary - w_interior) * is_boundary)
