"""Input checks shared by the postprocessing stages; each error names the argument."""

from __future__ import annotations

import math

import numpy as np

from emkit.errors import InputError
from emkit.targets import DEFAULT_OFFSETS


def check_unit_float(value, name, *, low=0.0, high=1.0):
    """``value`` as a float in [low, high], or InputError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise InputError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and low <= value <= high):
        raise InputError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return value


def check_size(value, name):
    """``value`` as an int >= 0, or InputError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InputError(f"{name} must be an integer >= 0 (voxels), got {value!r}")
    return int(value)


def check_thresholds(thresholds, name="thresholds"):
    """A non-empty tuple of floats in [0, 1], in the order given."""
    if isinstance(thresholds, (int, float, np.number)) and not isinstance(thresholds, bool):
        thresholds = (thresholds,)
    if isinstance(thresholds, (str, bytes)) or not hasattr(thresholds, "__len__") or not len(
        thresholds
    ):
        raise InputError(
            f"{name} must be a non-empty sequence of numbers in [0, 1], got {thresholds!r}"
        )
    return tuple(check_unit_float(t, f"{name} entry") for t in thresholds)


UNIT_RANGE_TOLERANCE = 1e-5


def check_values_in_unit_range(arr, name):
    """Raise InputError unless every value of ``arr`` lies in [0, 1] (no NaN).

    Values within :data:`UNIT_RANGE_TOLERANCE` outside the range pass: float32 blending
    of overlapping tiles (weights normalized to sum to one) rounds a prediction of 1 to
    1.0000001, which is a probability all the same.
    """
    if arr.size == 0:
        return
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if not (lo >= -UNIT_RANGE_TOLERANCE and hi <= 1.0 + UNIT_RANGE_TOLERANCE):  # False for NaN
        raise InputError(
            f"{name} must hold values in [0, 1] (probabilities), got values from {lo} to {hi}"
        )


def as_float32(arr):
    """``arr`` as float32, without a copy when it already is."""
    return arr if arr.dtype == np.float32 else arr.astype(np.float32)


def check_affs(affs, *, offsets=None, name="affs"):
    """Check a channels-last affinity volume; return it as float32 and its 3 NN channels.

    Args:
        affs: ndarray of shape (Z, Y, X, C), float, values in [0, 1].
        offsets: offset (dz, dy, dx) of each channel, or None for ``DEFAULT_OFFSETS``
            followed by any long-range channels.

    Returns:
        Tuple ``(affs_float32, (cz, cy, cx))``: the channel indices of the offsets
        (1, 0, 0), (0, 1, 0) and (0, 0, 1).
    """
    if not isinstance(affs, np.ndarray):
        raise InputError(f"{name} must be a numpy ndarray, got {type(affs).__name__}")
    if affs.ndim != 4:
        raise InputError(
            f"{name} must have shape (Z, Y, X, C), channels last, got shape {affs.shape}"
        )
    if affs.dtype.kind != "f":
        raise InputError(
            f"{name} must be a float array of probabilities in [0, 1], got dtype {affs.dtype} "
            "(scale uint8 affinities by 1/255 first)"
        )
    n_channels = affs.shape[-1]
    if offsets is None:
        if n_channels < 3:
            raise InputError(
                f"{name} of shape {affs.shape} has {n_channels} channels; the 3D watershed "
                f"needs the 3 nearest-neighbour channels {list(DEFAULT_OFFSETS)} first"
            )
        channels = (0, 1, 2)
    else:
        listed = [tuple(int(v) for v in np.ravel(o)) for o in offsets]
        if len(listed) != n_channels:
            raise InputError(
                f"offsets must give one offset per channel of {name} (shape {affs.shape}), "
                f"got {len(listed)} offsets"
            )
        missing = [d for d in DEFAULT_OFFSETS if d not in listed]
        if missing:
            raise InputError(
                f"offsets {listed} lack the nearest-neighbour offset(s) {missing}; the 3D "
                "watershed needs (1, 0, 0), (0, 1, 0) and (0, 0, 1)"
            )
        channels = tuple(listed.index(d) for d in DEFAULT_OFFSETS)
    check_values_in_unit_range(affs[..., list(channels)] if n_channels > 3 else affs, name)
    return as_float32(affs), channels


def check_fragments(fragments, shape=None, name="fragments"):
    """Raise InputError unless ``fragments`` is a 3D integer label volume (of ``shape``)."""
    if not isinstance(fragments, np.ndarray):
        raise InputError(f"{name} must be a numpy ndarray, got {type(fragments).__name__}")
    if fragments.ndim != 3 or fragments.dtype.kind not in "iu":
        raise InputError(
            f"{name} must be an integer ndarray of shape (Z, Y, X), got shape "
            f"{fragments.shape}, dtype {fragments.dtype}"
        )
    if shape is not None and fragments.shape != tuple(shape):
        raise InputError(
            f"{name} has shape {fragments.shape} but the affinities have spatial shape "
            f"{tuple(shape)}: they must match"
        )
    if fragments.dtype.kind == "i" and fragments.size and fragments.min() < 0:
        raise InputError(f"{name} must not hold negative labels, got min {fragments.min()}")
