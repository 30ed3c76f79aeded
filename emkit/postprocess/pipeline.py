"""Segmentations from affinities: the plain function the CLI and callbacks call.

:func:`segment_affinities` runs the 3D watershed with size-dependent merging
(:mod:`~emkit.postprocess.watershed`), then mean-affinity agglomeration
(:mod:`~emkit.postprocess.agglomeration`), and returns one segmentation per threshold.
Boundary maps go to :func:`~emkit.postprocess.watershed2d.watershed_2d`.
"""

from __future__ import annotations

import numpy as np

from emkit.postprocess._checks import check_affs, check_thresholds
from emkit.postprocess.agglomeration import (
    DEFAULT_BINS,
    _check_scoring,
    history_indices,
    threshold_luts,
)
from emkit.postprocess.watershed import (
    DEFAULT_DUST_SIZE,
    DEFAULT_HIGH,
    DEFAULT_LOW,
    DEFAULT_MERGE_THRESHOLD,
    DEFAULT_SIZE_THRESHOLD,
    check_watershed_options,
    watershed_graph,
)

#: Default agglomeration threshold: merge while the boundary's mean affinity is > 0.5.
DEFAULT_THRESHOLDS = (0.5,)


def segment_affinities(
    affs,
    *,
    thresholds=DEFAULT_THRESHOLDS,
    scoring="mean",
    quantile=0.5,
    bins=DEFAULT_BINS,
    low=DEFAULT_LOW,
    high=DEFAULT_HIGH,
    size_threshold=DEFAULT_SIZE_THRESHOLD,
    merge_threshold=DEFAULT_MERGE_THRESHOLD,
    dust_size=DEFAULT_DUST_SIZE,
    offsets=None,
    return_fragments=False,
):
    """Segment an affinity volume: watershed, then agglomeration at each threshold.

    Equivalent to ``agglomerate(affinity_watershed(affs, ...), affs, ...)`` but builds
    the fragments' region graph during the watershed and relabels the volume once per
    threshold, which saves a pass and a volume of memory.

    Args:
        affs: ndarray of shape (Z, Y, X, C), float in [0, 1], channels last; channels
            0-2 are offsets (1, 0, 0), (0, 1, 0), (0, 0, 1) unless ``offsets`` says
            otherwise; long-range channels are ignored.
        thresholds: agglomeration score thresholds (waterz's convention): ``t`` merges
            regions while their boundary's mean affinity exceeds ``1 - t``. Default 0.5.
        scoring: ``"mean"`` (default) or ``"quantile"`` of the boundary's affinities.
        quantile: the quantile for ``scoring="quantile"``.
        bins: histogram bins per edge for ``scoring="quantile"``.
        low, high, size_threshold, merge_threshold, dust_size: watershed options, see
            :func:`~emkit.postprocess.watershed.affinity_watershed`.
        offsets: offset of every channel; None means ``DEFAULT_OFFSETS`` first.
        return_fragments: also return the watershed fragments.

    Returns:
        List of ndarrays of shape (Z, Y, X), uint64, one per threshold in the order
        given; with ``return_fragments``, the tuple ``(segs, fragments)``.

    Example:
        >>> affs = np.full((2, 2, 4, 3), 0.9, np.float32)
        >>> affs[:, :, 2, 2] = 0.1  # a weak plane between x = 1 and x = 2
        >>> segment_affinities(affs, size_threshold=0)[0][0].tolist()
        [[1, 1, 2, 2], [1, 1, 2, 2]]
    """
    affs, channels = check_affs(affs, offsets=offsets)
    thresholds = check_thresholds(thresholds)
    quantile, bins = _check_scoring(scoring, quantile, bins)
    options = check_watershed_options(low, high, size_threshold, merge_threshold, dust_size)
    low, high, size_threshold, merge_threshold, dust_size = options
    seg, lut, rag = watershed_graph(
        affs, channels, low=low, high=high, size_threshold=size_threshold,
        merge_threshold=merge_threshold, dust_size=dust_size,
        bins=bins if scoring == "quantile" else 0,
    )
    n = int(lut.max()) + 1
    a, b, score = history_indices(rag, n, scoring=scoring, quantile=quantile,
                                  stop=max(thresholds))
    del rag
    segs = [
        np.take(final[lut], seg).view(np.uint64)
        for final in threshold_luts(a, b, score, n, np.asarray(thresholds))
    ]
    if return_fragments:
        return segs, np.take(lut, seg).view(np.uint64)
    return segs
