"""Rand scores by pair counting: Table 3.1's Rand full/split/merge, ISBI V_rand, SNEMI3D.

All scores here count *pairs of distinct voxels* (Rand 1971; Arganda-Carreras et al.
2015, Eq. 3; the Fiji scorer of ISBI 2012; ``skimage.metrics.adapted_rand_error``).
With n_ij the contingency counts, a_i the ground-truth segment sizes and b_j the
predicted segment sizes:

    pairs     = sum_ij n_ij (n_ij - 1)      pairs together in both
    gt_pairs  = sum_i  a_i  (a_i  - 1)      pairs together in the ground truth
    seg_pairs = sum_j  b_j  (b_j  - 1)      pairs together in the prediction

    split score = pairs / gt_pairs     (1 = no false splits; skimage calls it precision)
    merge score = pairs / seg_pairs    (1 = no false merges; skimage calls it recall)
    F-score     = 2 pairs / (gt_pairs + seg_pairs)
    adapted Rand error = 1 - F-score

Label 0:
    * ground truth 0 is unlabelled (or boundary): its voxels are not counted at all
      (the ISBI "foreground restriction", and the SNEMI3D/skimage default).
    * prediction 0 is "no segment": each such voxel counts as its own segment, a
      singleton, as cremi_python and the ISBI scorer intend. A singleton is never paired
      with another voxel, so it adds nothing to ``pairs`` and ``seg_pairs`` and still
      counts in ``gt_pairs``. Where the prediction has no 0, the scores equal
      scikit-image's exactly.

A ratio whose denominator is 0 (no pairs at all) is defined as 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emkit.metrics.contingency import Contingency, cell_sums, contingency_table


@dataclass(frozen=True)
class RandScores:
    """Pair-counting Rand scores (1 is perfect).

    Attributes:
        fscore: Rand F-score ("Rand - Full" in the thesis's Table 3.1; ISBI's V_rand).
        split: split score; low when true segments are split.
        merge: merge score; low when true segments are merged.
    """

    fscore: float
    split: float
    merge: float

    @property
    def error(self) -> float:
        """Adapted Rand error, ``1 - fscore``."""
        return 1.0 - self.fscore


def _pairs(sizes: np.ndarray) -> int:
    sizes = sizes.astype(np.int64, copy=False)
    # Exact in int64 up to about 3e9 voxels.
    return int(sizes @ (sizes - 1))


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else 1.0


def rand_from_table(table: Contingency) -> RandScores:
    """Rand F-score, split and merge scores from a contingency table.

    Args:
        table: a :class:`~emkit.metrics.contingency.Contingency`; cells whose predicted
            label is 0 are treated as singletons (see the module docstring).

    Returns:
        :class:`RandScores`.
    """
    sums = cell_sums(table)
    pairs = sums.paired
    gt_pairs = _pairs(sums.gt_sizes)
    seg_pairs = _pairs(sums.seg_sizes)
    return RandScores(
        fscore=_ratio(2 * pairs, gt_pairs + seg_pairs),
        split=_ratio(pairs, gt_pairs),
        merge=_ratio(pairs, seg_pairs),
    )


def rand_scores(
    seg: np.ndarray, gt: np.ndarray, *, per_section: bool = False, mask: np.ndarray | None = None
) -> RandScores:
    """Rand F-score, split and merge scores of a segmentation against ground truth.

    Args:
        seg: ndarray of shape (Z, Y, X), predicted labels (0 = no segment).
        gt: ndarray of shape (Z, Y, X), ground-truth labels (0 = unlabelled, ignored).
        per_section: compare only pairs of voxels in the same section (2D evaluation).
        mask: optional boolean ndarray; only voxels where it is True are counted.

    Returns:
        :class:`RandScores`.

    >>> r = rand_scores(np.array([[1, 1, 2, 2]]), np.array([[1, 1, 1, 1]]))
    >>> round(r.split, 4), r.merge, round(r.fscore, 4)
    (0.3333, 1.0, 0.5)
    """
    return rand_from_table(contingency_table(seg, gt, per_section=per_section, mask=mask))


def adapted_rand_error(seg: np.ndarray, gt: np.ndarray, *, per_section: bool = False) -> float:
    """The SNEMI3D adapted Rand error, ``1 - Rand F-score``, in 3D by default.

    Equals ``skimage.metrics.adapted_rand_error(gt, seg)[0]`` when ``seg`` has no label 0;
    see the module docstring for label 0.

    Args:
        seg: ndarray of shape (Z, Y, X), predicted labels.
        gt: ndarray of shape (Z, Y, X), ground-truth labels (0 ignored).
        per_section: compare only pairs of voxels in the same section.

    Returns:
        The error in [0, 1]; 0 is perfect.

    >>> adapted_rand_error(np.array([1, 1, 2, 2]), np.array([1, 1, 2, 2]))
    0.0
    """
    return rand_scores(seg, gt, per_section=per_section).error
