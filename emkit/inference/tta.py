"""Test-time augmentation: predict flipped and transposed tiles, undo it, average.

Plain NumPy. The variants are the flips of y and x and the transpose of y and x
(8, the dihedral group of the square), and in 3D also the flip of z (16). Each
variant's output is turned back into the original orientation and the variants
are averaged.

Boundaries (one channel, ``offsets=None``) need nothing more. An affinity
channel for offset ``d`` at voxel ``v`` is the probability that ``v`` and
``v - d`` belong together; on a flipped or transposed tile the model computes
it for the flipped or transposed offset. Turned back, channel ``i`` holds the
affinity of ``v`` and ``v - e`` with ``e = L d_i`` (``L`` the variant's signed
permutation of the axes), which is channel ``j`` where ``d_j = e``, or channel
``j`` shifted by one offset where ``d_j = -e``::

    x flip, d = (0, 0, 1):  turned back, the output at v is aff(v, v + 1)
    aff(v, v - 1) = aff(v - 1, v) = output at v - 1: shift by d along x

    output   [ a0 a1 a2 a3 ]          (a_k = aff(k, k + 1))
    channel  [ -- a0 a1 a2 ]          (-- masked: the edge leaves the tile)

    yx transpose: the y channel (0, 1, 0) and the x channel (0, 0, 1) swap.

A masked voxel is averaged over the variants that have it (the identity always
does), so a model that is exactly equivariant gives the same map with and
without augmentation.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from emkit.errors import InputError


@dataclass(frozen=True)
class Transform:
    """One test-time variant: flips, then an optional y/x transpose.

    Attributes:
        flip: Whether to flip ``(z, y, x)``.
        transpose: Whether to swap the y and x axes (after flipping).
    """

    flip: tuple[bool, bool, bool]
    transpose: bool


def dihedral_transforms(*, flip_z: bool = False, transpose: bool = True) -> list[Transform]:
    """The flip and transpose variants, the identity first.

    Args:
        flip_z: Flip z too (3D models): 16 variants instead of 8.
        transpose: Include the y/x transpose (halves the count when False).

    >>> len(dihedral_transforms()), len(dihedral_transforms(flip_z=True))
    (8, 16)
    """
    return [
        Transform(flip=(fz, fy, fx), transpose=t)
        for fz, t, fy, fx in itertools.product(
            (False, True) if flip_z else (False,), (False, True) if transpose else (False,),
            (False, True), (False, True),
        )
    ]


def apply_transform(x: np.ndarray, transform: Transform) -> np.ndarray:
    """A batch in a variant's orientation.

    Args:
        x: ndarray of shape ``(B, Z, Y, X, C)``.
        transform: The variant.

    Returns:
        A view of ``x``, flipped and transposed.
    """
    axes = [1 + a for a, f in enumerate(transform.flip) if f]
    if axes:
        x = np.flip(x, axis=axes)
    return np.swapaxes(x, 2, 3) if transform.transpose else x


def invert_transform(y: np.ndarray, transform: Transform) -> np.ndarray:
    """A batch in a variant's orientation turned back (channels unchanged).

    Args:
        y: ndarray of shape ``(B, Z, Y, X, C)``, e.g. the model's output for
            :func:`apply_transform`'s batch.
        transform: The variant.

    Returns:
        A view of ``y`` in the original orientation.
    """
    if transform.transpose:
        y = np.swapaxes(y, 2, 3)
    axes = [1 + a for a, f in enumerate(transform.flip) if f]
    return np.flip(y, axis=axes) if axes else y


def channel_moves(offsets, transform: Transform):
    """Where each output channel of a variant goes, once turned back.

    Args:
        offsets: One ``(z, y, x)`` (or ``(y, x)``) offset per channel, or None
            for channels that are not affinities (boundaries): nothing moves.
        transform: The variant.

    Returns:
        A list of ``(source, target, shift)``: add the turned-back channel
        ``source`` to channel ``target``, shifted by ``shift`` voxels ``(z, y,
        x)`` (None: not shifted).

    Raises:
        InputError: The offsets are not closed under the variant: a flipped or
            transposed offset, or its negation, is missing from the list.

    >>> channel_moves([(1, 0, 0), (0, 1, 0), (0, 0, 1)], Transform((False, False, True), True))
    [(0, 0, None), (1, 2, (0, 0, 1)), (2, 1, None)]
    """
    if offsets is None:
        return None
    offsets = normalize_offsets(offsets)
    moves = []
    for source, d in enumerate(offsets):
        e = (d[0], d[2], d[1]) if transform.transpose else d
        e = tuple(-v if f else v for v, f in zip(e, transform.flip))
        neg = tuple(-v for v in e)
        if e in offsets:
            moves.append((source, offsets.index(e), None))
        elif neg in offsets:
            target = offsets.index(neg)
            moves.append((source, target, offsets[target]))
        else:
            raise InputError(
                f"offsets: {list(offsets)} is not closed under test-time flips and transposes: "
                f"the variant {_describe(transform)} maps offset {d} to {e}, and neither it nor "
                f"{neg} is in the list; add it, or predict without tta"
            )
    return moves


def normalize_offsets(offsets) -> list[tuple[int, int, int]]:
    """Offsets as ``(z, y, x)`` int tuples; a 2D ``(y, x)`` offset gets ``z = 0``."""
    out = []
    for d in offsets:
        d = tuple(int(v) for v in d)
        if len(d) == 2:
            d = (0, *d)
        if len(d) != 3 or not any(d):
            raise InputError(f"offsets: expected nonzero (z, y, x) or (y, x) ints, got {d}")
        out.append(d)
    return out


def predict_tta(
    run: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    *,
    transforms: Sequence[Transform],
    offsets=None,
) -> np.ndarray:
    """The mean prediction over test-time variants.

    Args:
        run: Maps an input batch ``(B, Z, Y, X, C_in)`` to an output batch
            ``(B, Z', Y', X', C)``; it must accept the transposed batch too (a
            square y/x tile).
        x: ndarray of shape ``(B, Z, Y, X, C_in)``.
        transforms: The variants (:func:`dihedral_transforms`).
        offsets: Affinity offset of each output channel, or None (boundaries).

    Returns:
        float32 ndarray of shape ``(B, Z', Y', X', C)``.
    """
    total = count = None
    for transform in transforms:
        y = invert_transform(run(np.ascontiguousarray(apply_transform(x, transform))), transform)
        if total is None:
            total = np.zeros(y.shape, np.float32)
            count = np.zeros(y.shape[1:], np.float32)
        moves = channel_moves(offsets, transform)
        if moves is None:
            total += y
            count += 1
            continue
        for source, target, shift in moves:
            if shift is None:
                total[..., target] += y[..., source]
                count[..., target] += 1
                continue
            dst, src = _shifted(y.shape[1:4], shift)
            total[(slice(None), *dst, target)] += y[(slice(None), *src, source)]
            count[(*dst, target)] += 1
    return total / count


def _shifted(shape, shift):
    """Slices ``dst, src`` with ``dst[v] = src[v - shift]`` inside a window of ``shape``."""
    dst = tuple(slice(max(d, 0), n + min(d, 0)) for n, d in zip(shape, shift))
    src = tuple(slice(max(-d, 0), n - max(d, 0)) for n, d in zip(shape, shift))
    return dst, src


def _describe(transform: Transform) -> str:
    words = [f"flip {a}" for a, f in zip("zyx", transform.flip) if f]
    if transform.transpose:
        words.append("transpose y/x")
    return " + ".join(words) or "identity"


__all__ = [
    "Transform",
    "apply_transform",
    "channel_moves",
    "dihedral_transforms",
    "invert_transform",
    "normalize_offsets",
    "predict_tta",
]
