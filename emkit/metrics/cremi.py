"""The CREMI neuron-id score, computed as the cremi_python evaluation does.

CREMI (MICCAI 2016, https://cremi.org) ranks neuron segmentations by

    CREMI score = sqrt(VOI x ARAND),   VOI = voi_split + voi_merge (bits)

after masking, in every section, the ground-truth voxels within ``border_threshold_nm``
(25 nm in the challenge) of a label boundary. The two terms follow cremi_python's own
formulas, which differ from the pair-counting scores in :mod:`emkit.metrics.rand`:

* ARAND counts self-pairs (sums of n_ij**2, not n_ij (n_ij - 1)), and each voxel with
  predicted label 0 adds ``1 / N`` to the joint and predicted sums, N being the number of
  voxels in the volume, masked ones included. This is cremi_python's (and the SNEMI3D
  script's) way of making predicted-0 voxels singletons, reproduced exactly so that scores
  compare with the CREMI leaderboard.
* VOI ignores only masked ground truth; predicted label 0 is an ordinary segment.

Ground-truth label 0: cremi_python treats it as an ordinary object (CREMI volumes have no
unlabelled 0). emkit's convention is that ground-truth 0 is unlabelled, so by default
(``unlabelled=0``) its voxels are masked like border voxels. Pass ``unlabelled=None`` to
reproduce cremi_python bit for bit on a volume that uses 0 as an object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from emkit.errors import InputError
from emkit.metrics.contingency import (
    SLAB_VOXELS,
    Contingency,
    ContingencyCounter,
    check_label_pair,
    iter_slabs,
)


@dataclass(frozen=True)
class CremiScores:
    """The CREMI score and its parts.

    Attributes:
        cremi_score: sqrt(voi * adapted_rand_error); 0 is perfect.
        adapted_rand_error: cremi_python's ARAND.
        voi_split: H(seg | gt) in bits, on unmasked voxels.
        voi_merge: H(gt | seg) in bits, on unmasked voxels.
    """

    cremi_score: float
    adapted_rand_error: float
    voi_split: float
    voi_merge: float


def border_mask(gt: np.ndarray, max_dist_px: float) -> np.ndarray:
    """Voxels within ``max_dist_px`` (in-plane pixels) of a label change, per section.

    A pixel is on a boundary when one of its four in-plane neighbours has another label
    (the volume's edge is not a boundary). Every pixel whose Euclidean distance to a
    boundary pixel is at most ``max_dist_px`` is in the mask, boundary pixels included.

    Args:
        gt: ndarray of shape (Z, Y, X), ground-truth labels.
        max_dist_px: distance in pixels, e.g. 25 nm / 4 nm = 6.25.

    Returns:
        Boolean ndarray of shape (Z, Y, X), True where voxels are masked.

    >>> border_mask(np.array([[[1, 1, 2, 2, 2]]]), 0).astype(int).tolist()
    [[[0, 1, 1, 0, 0]]]
    """
    gt = np.asarray(gt)
    if gt.ndim != 3:
        raise InputError(f"border_mask expects a (Z, Y, X) volume, got shape {gt.shape}")
    mask = np.empty(gt.shape, dtype=bool)
    for z in range(gt.shape[0]):
        section = gt[z]
        padded = np.pad(section, 1, mode="edge")
        inside = (
            (section == padded[:-2, 1:-1])
            & (section == padded[2:, 1:-1])
            & (section == padded[1:-1, :-2])
            & (section == padded[1:-1, 2:])
        )
        if inside.all():
            mask[z] = False
            continue
        mask[z] = ndimage.distance_transform_edt(inside) <= max(max_dist_px, 0.0)
    return mask


def cremi_mask(
    gt: np.ndarray,
    *,
    voxel_size_nm: tuple[float, float, float],
    border_threshold_nm: float | None = 25.0,
    unlabelled: int | None = 0,
) -> np.ndarray:
    """The ground-truth voxels that the CREMI score leaves out.

    Works section by section, so a slab of sections gives the slab of the whole mask.

    Args:
        gt: ndarray of shape (Z, Y, X), ground-truth neuron ids.
        voxel_size_nm: (z, y, x) voxel size; y sets the border distance in pixels.
        border_threshold_nm: mask ground truth within this distance of a boundary;
            0 or None disables the border mask.
        unlabelled: a ground-truth label to mask as well (default 0), or None.

    Returns:
        Boolean ndarray of the shape of ``gt``, True where voxels are masked.
    """
    if len(voxel_size_nm) != 3:
        raise InputError(f"voxel_size_nm must be (z, y, x), got {voxel_size_nm!r}")
    gt = np.asarray(gt)
    masked = np.zeros(gt.shape, dtype=bool)
    if border_threshold_nm:
        masked |= border_mask(gt, float(border_threshold_nm) / float(voxel_size_nm[1]))
    if unlabelled is not None:
        masked |= gt == unlabelled
    return masked


def cremi_from_table(table: Contingency, n_voxels: int) -> CremiScores:
    """The CREMI score from the table of the unmasked voxels.

    Args:
        table: contingency table of the voxels not masked by :func:`cremi_mask`, counted
            with ``ignore_gt=()``.
        n_voxels: voxels in the volume, masked ones included (cremi_python's N).

    Returns:
        :class:`CremiScores`.
    """
    n_all = n_voxels
    counts = table.counts.astype(np.float64)
    zero = table.seg_is_zero()
    c_zero = counts[zero].sum()
    gt_sizes = table.gt_sizes().astype(np.float64)
    seg_sizes = table.seg_sizes(skip_zero=True).astype(np.float64)
    sum_gt = float(gt_sizes @ gt_sizes)
    sum_seg = float(seg_sizes @ seg_sizes) + c_zero / n_all
    sum_joint = float(counts[~zero] @ counts[~zero]) + c_zero / n_all
    precision = sum_joint / sum_seg if sum_seg else 0.0
    recall = sum_joint / sum_gt if sum_gt else 0.0
    fscore = 2.0 * precision * recall / (precision + recall) if precision + recall else 0.0
    arand = 1.0 - fscore

    total = counts.sum()
    if total:
        p = counts / total
        h_joint = -float(p @ np.log2(p))
        p_gt = gt_sizes / total
        p_seg = table.seg_sizes() / total
        p_gt, p_seg = p_gt[p_gt > 0], p_seg[p_seg > 0]
        voi_split = max(h_joint + float(p_gt @ np.log2(p_gt)), 0.0)
        voi_merge = max(h_joint + float(p_seg @ np.log2(p_seg)), 0.0)
    else:
        voi_split = voi_merge = 0.0
    return CremiScores(
        cremi_score=float(np.sqrt((voi_split + voi_merge) * arand)),
        adapted_rand_error=arand,
        voi_split=voi_split,
        voi_merge=voi_merge,
    )


def cremi_score(
    seg,
    gt,
    *,
    voxel_size_nm: tuple[float, float, float],
    border_threshold_nm: float = 25.0,
    unlabelled: int | None = 0,
    slab_voxels: int = SLAB_VOXELS,
) -> CremiScores:
    """CREMI score of a segmentation, as cremi_python's ``NeuronIds`` computes it.

    Args:
        seg: ndarray of shape (Z, Y, X), predicted neuron ids, or a lazy array (an
            :class:`emkit.io.Volume`, h5py dataset or Zarr array), read in slabs.
        gt: ndarray or lazy array of shape (Z, Y, X), ground-truth neuron ids.
        voxel_size_nm: (z, y, x) voxel size; y sets the border distance in pixels.
        border_threshold_nm: mask ground truth within this distance of a boundary;
            0 or None disables the border mask.
        unlabelled: a ground-truth label to mask as well (default 0), or None.
        slab_voxels: sections read and counted at a time, in voxels (at least one
            section); the score does not depend on it.

    Returns:
        :class:`CremiScores`.
    """
    seg, gt = check_label_pair(seg, gt)
    if len(gt.shape) != 3:
        raise InputError(f"cremi_score expects (Z, Y, X) volumes, got shape {tuple(gt.shape)}")
    if len(voxel_size_nm) != 3:
        raise InputError(f"voxel_size_nm must be (z, y, x), got {voxel_size_nm!r}")
    # cremi_python: masked voxels become ground-truth label 0, every other label moves up
    # by one, then label 0 is ignored. Masking directly is the same thing.
    counter = ContingencyCounter(ignore_gt=())
    for _, _, (s, g) in iter_slabs(seg, gt, slab_voxels=slab_voxels):
        masked = cremi_mask(
            g, voxel_size_nm=voxel_size_nm, border_threshold_nm=border_threshold_nm,
            unlabelled=unlabelled,
        )
        counter.add(s, g, mask=~masked)
    return cremi_from_table(counter.table(), int(np.prod(gt.shape, dtype=np.int64)))
