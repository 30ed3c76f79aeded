"""Affinities from a segmentation, and boundary maps from affinities.

Channel ``c`` for offset ``d`` at voxel ``v`` is 1 when ``v`` and ``v - d`` carry the
same nonzero label (Turaga et al. 2010; the DeepEM / gunpowder convention), channels
last. Edges that leave the volume or touch label 0 are masked, not guessed.

References:
    S. C. Turaga et al. (2010). Convolutional networks can learn to generate affinity
    graphs for image segmentation. Neural Computation 22(2): 511-538.
"""

import numpy as np

from emkit.errors import InputError
from emkit.targets._checks import check_array, check_seg

#: Nearest-neighbour offsets (z, y, x) of the default affinity channels, in channel order.
DEFAULT_OFFSETS = ((1, 0, 0), (0, 1, 0), (0, 0, 1))
#: Nearest-neighbour offsets (y, x) for 2D inputs.
DEFAULT_OFFSETS_2D = ((1, 0), (0, 1))

_REDUCTIONS = ("mean", "min")


def _default_offsets(ndim):
    return DEFAULT_OFFSETS if ndim == 3 else DEFAULT_OFFSETS_2D


def _as_offsets(offsets, ndim, name="offsets"):
    """``offsets`` as a tuple of int tuples, checked: non-empty, length ``ndim``, nonzero."""
    if offsets is None:
        return _default_offsets(ndim)
    try:
        arr = np.asarray(offsets)
    except ValueError:  # ragged, e.g. [(1, 0, 0), (0, 1)]
        arr = None
    if arr is None or arr.ndim != 2 or arr.shape[0] == 0 or arr.dtype.kind not in "iu":
        got = "a ragged list" if arr is None else f"shape {arr.shape}, dtype {arr.dtype}"
        raise InputError(
            f"{name} must be a non-empty list of integer {ndim}-tuples such as "
            f"{list(_default_offsets(ndim))}; got {offsets!r} ({got})"
        )
    if arr.shape[1] != ndim:
        hint = "; write an in-plane offset in a volume as (0, dy, dx)" if ndim == 3 else ""
        raise InputError(
            f"{name} must have {ndim} values each to match a {ndim}D input, got "
            f"{arr.shape[1]} values each: {offsets!r}{hint}"
        )
    zero = np.flatnonzero(~arr.any(axis=1))
    if zero.size:
        raise InputError(
            f"{name} must not contain the zero offset, but entry {int(zero[0])} is "
            f"{tuple(arr[zero[0]].tolist())}"
        )
    return tuple(tuple(int(v) for v in row) for row in arr)


def _edge_slices(offset, shape):
    """Slices ``(at_v, at_v_minus_d)`` over every ``v`` with ``v`` and ``v - d`` inside.

    Returns None when there is no such ``v`` (the offset reaches past the volume).
    """
    at_v, at_u = [], []
    for d, n in zip(offset, shape):
        if abs(d) >= n:
            return None
        at_v.append(slice(d, n) if d >= 0 else slice(0, n + d))
        at_u.append(slice(0, n - d) if d >= 0 else slice(-d, n))
    return tuple(at_v), tuple(at_u)


def seg_to_affinities(seg, offsets=None, *, dtype=np.float32):
    """Affinities and their mask from a label volume.

    Channel ``c`` at voxel ``v`` is 1 when ``seg[v] == seg[v - offsets[c]] != 0`` and 0
    otherwise. The mask is 1 where that edge is known: both ends lie inside the volume
    and both are labelled (nonzero). Where the mask is 0 the affinity is 0 too.

    Args:
        seg: ndarray of shape (Z, Y, X) or (Y, X), integer or bool labels; 0 is unlabelled.
        offsets: sequence of C integer offsets of length ``seg.ndim``, (dz, dy, dx) or
            (dy, dx). Long-range, anisotropic and negative offsets are allowed, the zero
            offset is not; an offset as long as the volume gives an all-masked channel.
            Defaults to ``DEFAULT_OFFSETS`` for 3D and ``DEFAULT_OFFSETS_2D`` for 2D seg.
        dtype: dtype of both outputs, numeric or bool.

    Returns:
        Tuple ``(affs, mask)`` of ndarrays of shape (Z, Y, X, C), or (Y, X, C) for 2D
        seg, dtype ``dtype``, holding 0 and 1.

    Example:
        >>> seg = np.array([[[1, 1, 2, 0]]])
        >>> affs, mask = seg_to_affinities(seg)
        >>> affs[0, 0, :, 2].tolist(), mask[0, 0, :, 2].tolist()
        ([0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0])
    """
    check_seg(seg)
    offsets = _as_offsets(offsets, seg.ndim)
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise InputError(f"dtype must be a numeric or bool dtype, got {dtype}")
    shape = seg.shape + (len(offsets),)
    affs = np.zeros(shape, dtype=dtype)
    mask = np.zeros(shape, dtype=dtype)
    labelled = seg != 0
    for c, offset in enumerate(offsets):
        slices = _edge_slices(offset, seg.shape)
        if slices is None:
            continue
        at_v, at_u = slices
        known = labelled[at_v] & labelled[at_u]
        mask[at_v + (c,)] = known
        # seg[v] == seg[v - d] together with seg[v] != 0 implies seg[v - d] != 0.
        affs[at_v + (c,)] = np.logical_and(seg[at_v] == seg[at_u], labelled[at_v], out=known)
    return affs, mask


def _channel_indices(channels, known, spatial, n_channels, shape):
    if channels is None:
        channels = DEFAULT_OFFSETS[1:] if spatial == 3 else DEFAULT_OFFSETS_2D
    if isinstance(channels, (str, bytes)) or not hasattr(channels, "__len__") or not len(channels):
        raise InputError(f"channels must be a non-empty sequence, got {channels!r}")
    indices = []
    for ch in channels:
        if np.ndim(ch) == 0 and isinstance(ch, (int, np.integer)) and not isinstance(ch, bool):
            if not 0 <= ch < n_channels:
                raise InputError(
                    f"channels entry {ch} is out of range for affs of shape {shape} "
                    f"({n_channels} channels)"
                )
            indices.append(int(ch))
            continue
        offset = tuple(np.ravel(ch).tolist()) if np.ndim(ch) == 1 else None  # 1.5 matches none
        if offset not in known:
            raise InputError(
                f"channels entry {ch!r} is neither a channel index nor a known offset; "
                f"channel offsets: {list(known)} (pass offsets= to name every channel)"
            )
        indices.append(known.index(offset))
    return indices


def affinities_to_boundaries(affs, *, channels=None, offsets=None, reduce="mean"):
    """Boundary map ``1 - reduce(affs[..., channels])`` from affinities.

    The affinity at ``v`` for offset ``d`` describes the edge to ``v - d``, so the
    boundary at ``v`` only sees the edges to its lower neighbours: it lies half a voxel
    towards ``-d`` of where the label interface is.

    Args:
        affs: ndarray of shape (Z, Y, X, C), or (Y, X, C) for 2D affinities, numeric, with
            values in [0, 1] (not checked).
        channels: channels to combine, as channel indices (ints) or offsets (tuples)
            looked up in ``offsets``. Defaults to the in-plane nearest-neighbour channels,
            offsets (0, 1, 0) and (0, 0, 1) (for 2D affinities (1, 0) and (0, 1)).
        offsets: offset of every channel of ``affs`` (length C). If None, the first
            channels are taken to be ``DEFAULT_OFFSETS`` (``DEFAULT_OFFSETS_2D``), as the
            channel convention prescribes; later channels can then be picked by index only.
        reduce: ``"mean"`` (mean affinity) or ``"min"`` (weakest affinity, so the
            strongest evidence of a boundary wins).

    Returns:
        ndarray of shape (Z, Y, X) (or (Y, X)), with the dtype of ``affs`` if it is
        floating point, else float32.

    Example:
        >>> affs = np.ones((1, 2, 2, 3), np.float32)
        >>> affs[0, 1, 1, 2] = 0.0
        >>> affinities_to_boundaries(affs)[0].tolist()
        [[0.0, 0.0], [0.0, 0.5]]
    """
    check_array(affs, "affs", ndims=(3, 4), kinds="biuf", kinds_text="a numeric or bool")
    spatial, n_channels = affs.ndim - 1, affs.shape[-1]
    if reduce not in _REDUCTIONS:
        raise InputError(f"reduce must be one of {list(_REDUCTIONS)}, got {reduce!r}")
    if offsets is None:
        known = _default_offsets(spatial)[:n_channels]
    else:
        known = _as_offsets(offsets, spatial)
        if len(known) != n_channels:
            raise InputError(
                f"offsets must give one offset per channel of affs (shape {affs.shape}, "
                f"{n_channels} channels), got {len(known)} offsets"
            )
    picked = affs[..., _channel_indices(channels, known, spatial, n_channels, affs.shape)]
    out_dtype = affs.dtype if affs.dtype.kind == "f" else np.dtype(np.float32)
    if reduce == "mean":
        reduced = picked.mean(axis=-1, dtype=np.promote_types(out_dtype, np.float32))
    else:
        reduced = picked.min(axis=-1)
    return np.subtract(1, reduced, dtype=out_dtype, casting="unsafe")
