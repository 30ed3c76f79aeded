"""Segmentations from affinities: the plain function the CLI and callbacks call.

:func:`segment_affinities` runs the 3D watershed with size-dependent merging
(:mod:`~emkit.postprocess.watershed`), then mean-affinity agglomeration
(:mod:`~emkit.postprocess.agglomeration`), and returns one segmentation per threshold.
Boundary maps go to :func:`~emkit.postprocess.watershed2d.watershed_2d`.
"""

from __future__ import annotations

import numpy as np

from emkit.postprocess._checks import check_affs
from emkit.postprocess.agglomeration import history_indices, threshold_luts
from emkit.postprocess.options import DEFAULTS, SegmentOptions, takes_options
from emkit.postprocess.watershed import watershed_graph

#: Default agglomeration threshold: merge while the boundary's mean affinity is > 0.5.
DEFAULT_THRESHOLDS = DEFAULTS.thresholds


@takes_options
def segment_affinities(affs, *, offsets=None, return_fragments=False, **options):
    """Segment an affinity volume: watershed, then agglomeration at each threshold.

    Equivalent to ``agglomerate(affinity_watershed(affs, ...), affs, ...)`` but builds
    the fragments' region graph during the watershed and relabels the volume once per
    threshold, which saves a pass and a volume of memory.

    Args:
        affs: ndarray of shape (Z, Y, X, C), float in [0, 1], channels last; channels
            0-2 are offsets (1, 0, 0), (0, 1, 0), (0, 0, 1) unless ``offsets`` says
            otherwise; long-range channels are ignored.
        offsets: offset of every channel; None means ``DEFAULT_OFFSETS`` first.
        return_fragments: also return the watershed fragments.
        **options: the options of :class:`~emkit.postprocess.options.SegmentOptions`,
            by name, with its defaults: ``thresholds`` (agglomeration score thresholds,
            waterz's convention: ``t`` merges regions while their boundary's mean
            affinity exceeds ``1 - t``; default 0.5), ``scoring`` (``"mean"`` or
            ``"quantile"``), ``quantile``, ``bins``, and the watershed's ``low``,
            ``high``, ``size_threshold``, ``merge_threshold`` and ``dust_size`` (see
            :func:`~emkit.postprocess.watershed.affinity_watershed`; ``dust_size``
            removes small fragments, before agglomeration).

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
    options = SegmentOptions.checked(**options)
    seg, lut, rag = watershed_graph(affs, channels, **options.watershed,
                                    bins=options.histogram_bins)
    n = int(lut.max()) + 1
    thresholds = options.thresholds
    a, b, score = history_indices(rag, n, scoring=options.scoring, quantile=options.quantile,
                                  stop=max(thresholds))
    del rag
    segs = [
        np.take(final[lut], seg).view(np.uint64)
        for final in threshold_luts(a, b, score, n, np.asarray(thresholds))
    ]
    if return_fragments:
        return segs, np.take(lut, seg).view(np.uint64)
    return segs
