"""Boundary maps from a segmentation, and segmentations from boundary maps."""

import cc3d
import numpy as np

from emkit.errors import InputError
from emkit.targets._checks import check_array, check_int, check_seg


def _axes(ndim, per_section):
    return (1, 2) if ndim == 3 and per_section else tuple(range(ndim))


def _pair(ndim, axis):
    """Slices selecting, along ``axis``, all voxels but the last and all but the first."""
    lo, hi = [slice(None)] * ndim, [slice(None)] * ndim
    lo[axis], hi[axis] = slice(None, -1), slice(1, None)
    return tuple(lo), tuple(hi)


def seg_to_boundaries(seg, *, thickness=1, per_section=True):
    """Boundary map (1 = boundary) from a label volume.

    A voxel ``v`` is boundary when ``seg[v] == 0`` or some voxel ``u`` with a different
    label lies within city-block distance ``thickness`` of it (``|u - v|_1 <= thickness``,
    ``u`` in the same section when ``per_section``). So ``thickness=1`` marks every voxel
    that has a 4-neighbour (6-neighbour in 3D with ``per_section=False``) of another
    label, and the interface between two objects becomes a line 2 voxels wide, one on
    each side; thickness ``t`` makes it ``2 t`` wide, ``t`` on each side. Label 0 counts
    as a different label, so objects also lose ``t`` voxels next to unlabelled voxels.
    ``thickness=0`` marks only the unlabelled voxels. The volume's edge is no boundary.

    Args:
        seg: ndarray of shape (Z, Y, X) or (Y, X), integer or bool labels.
        thickness: integer >= 0, see above.
        per_section: for 3D seg, look for label changes within each z-section only (in y
            and x), as suits anisotropic serial-section data; if False, z-neighbours count
            too. Ignored for 2D seg.

    Returns:
        ndarray of the shape of ``seg``, dtype uint8, 1 on boundaries and 0 elsewhere.

    Example:
        >>> seg_to_boundaries(np.array([[1, 1, 2, 2, 2, 0]])).tolist()
        [[0, 1, 1, 0, 1, 1]]
    """
    check_seg(seg)
    thickness = check_int(thickness, "thickness", minimum=0)
    boundaries = seg == 0
    if thickness > 0:
        axes = _axes(seg.ndim, per_section)
        near_change = np.zeros(seg.shape, dtype=bool)
        for axis in axes:
            lo, hi = _pair(seg.ndim, axis)
            differs = seg[lo] != seg[hi]
            near_change[lo] |= differs
            near_change[hi] |= differs
        # Within distance t of another label <=> within t - 1 of a voxel beside one.
        for _ in range(thickness - 1):
            grown = near_change.copy()
            for axis in axes:
                lo, hi = _pair(seg.ndim, axis)
                grown[lo] |= near_change[hi]
                grown[hi] |= near_change[lo]
            near_change = grown
        boundaries |= near_change
    return boundaries.view(np.uint8)


def boundaries_to_seg(boundaries, *, threshold=0.5, per_section=True, connectivity=1):
    """Segmentation from a boundary map: connected components of the interior.

    Interior voxels are those with ``boundaries < threshold``; boundary voxels get 0.

    Args:
        boundaries: ndarray of shape (Z, Y, X) or (Y, X), numeric or bool, 1 = boundary.
            NaN counts as boundary.
        threshold: voxels strictly below it are interior.
        per_section: for 3D input, label each z-section on its own (2D components), so
            no component spans two sections. Ignored for 2D input.
        connectivity: how many orthogonal hops make two voxels neighbours, as in
            scikit-image: 1 = 4-connected in 2D (6 in 3D), 2 = 8-connected (18 in 3D),
            3 = 26-connected (3D only, ``per_section=False``).

    Returns:
        ndarray of the shape of ``boundaries``, dtype uint64: component ids consecutive
        from 1 and unique across the whole volume (sections never share an id), numbered
        section by section and, within one, in order of first voxel (C order); 0 on
        boundaries.

    Example:
        >>> boundaries_to_seg(np.array([[[0, 1, 0]], [[0, 0, 1]]])).tolist()
        [[[1, 0, 2]], [[3, 3, 0]]]
    """
    check_array(
        boundaries, "boundaries", ndims=(2, 3), kinds="biuf", kinds_text="a numeric or bool"
    )
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)):
        raise InputError(f"threshold must be a real number, got {threshold!r}")
    sections = boundaries.ndim == 3 and per_section
    planar = boundaries.ndim == 2 or sections
    neighbours = {1: 4, 2: 8} if planar else {1: 6, 2: 18, 3: 26}
    if isinstance(connectivity, bool) or connectivity not in neighbours:
        where = "2D or per-section" if planar else "3D"
        raise InputError(
            f"connectivity must be one of {list(neighbours)} for {where} labelling, got "
            f"{connectivity!r}"
        )
    # C order, so that ids are numbered the same whatever the memory layout of the input.
    interior = np.ascontiguousarray(boundaries < threshold)
    if not sections:
        return cc3d.connected_components(
            interior, connectivity=neighbours[connectivity], out_dtype=np.uint64
        )
    seg = np.zeros(interior.shape, dtype=np.uint64)
    next_id = 0
    for z, section in enumerate(interior):
        labels, n = cc3d.connected_components(
            section, connectivity=neighbours[connectivity], out_dtype=np.uint64, return_N=True
        )
        np.add(labels, next_id, out=seg[z], where=section)
        next_id += n
    return seg
