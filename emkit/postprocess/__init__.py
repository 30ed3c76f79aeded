"""Postprocessing: segmentations from boundary maps and affinities.

Plain NumPy/SciPy/scikit-image with numba-compiled loops (llvmlite JIT: no C compiler is
needed at run time, and compiled code is cached beside the modules); nothing here
imports Keras or TensorFlow. Arrays are channels last, ``(Z, Y, X, C)``; the CLI
converts the channels-first ``(C, Z, Y, X)`` files. An affinity channel for offset
``d`` at ``v`` is the probability that ``v`` and ``v - d`` are one object (STYLE.md);
the 3D stages read only the nearest-neighbour channels, offsets (1, 0, 0), (0, 1, 0)
and (0, 0, 1), and ignore long-range ones.

Stages, one module each:

* :mod:`.watershed2d`: :func:`watershed_2d`, seeded watershed per section on a
  boundary map (seeds from a threshold or from distance-transform maxima), with a
  minimum segment size.
* :mod:`.watershed`: :func:`affinity_watershed`, the affinity-graph watershed with
  size-dependent single linkage of Zlateski & Seung (2015).
* :mod:`.rag`: :func:`region_graph`, the region adjacency graph with the count, sum,
  maximum (and optionally a histogram) of the affinities along each boundary.
* :mod:`.agglomeration`: :func:`agglomerate` and :func:`merge_history`, greedy
  mean-affinity (or quantile) agglomeration, several thresholds from one pass, as
  waterz does.
* :mod:`.options`: :class:`SegmentOptions`, the watershed and agglomeration options
  and their defaults, defined once for the library, blockwise runs and the CLI; it
  imports only the standard library.
* :mod:`.pipeline`: :func:`segment_affinities`, watershed then agglomeration, the one
  call the CLI and the training's validation callback use.
* :mod:`.synthetic`: :func:`noisy_affinities`, the documented noise model used to
  test and benchmark the above on ground truth.

Example:
    >>> import numpy as np
    >>> from emkit.postprocess import segment_affinities
    >>> affs = np.full((2, 2, 4, 3), 0.9, np.float32)
    >>> affs[:, :, 2, 2] = 0.1  # a weak plane between x = 1 and x = 2
    >>> [seg] = segment_affinities(affs, thresholds=[0.5])
    >>> seg[0].tolist()
    [[1, 1, 2, 2], [1, 1, 2, 2]]
"""

import importlib

from emkit.postprocess.options import SCORINGS, SegmentOptions

#: A recipe's ``postprocess.method`` -> ``"module:function"`` that segments with it; its
#: keyword arguments are the method's ``postprocess.options``.
METHODS = {"watershed_2d": "emkit.postprocess.watershed2d:watershed_2d",
           "affinity_watershed": "emkit.postprocess.pipeline:segment_affinities"}

# Names of the numba stages -> their module, imported on first use, so that importing
# emkit.postprocess (or its options, which the CLI's parser reads) compiles nothing.
_LAZY = {
    "MergeHistory": "agglomeration", "agglomerate": "agglomeration",
    "merge_history": "agglomeration", "DEFAULT_THRESHOLDS": "pipeline",
    "segment_affinities": "pipeline", "RegionGraph": "rag", "region_graph": "rag",
    "noisy_affinities": "synthetic", "affinity_watershed": "watershed",
    "SEEDS": "watershed2d", "watershed_2d": "watershed2d",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"emkit.postprocess.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'emkit.postprocess' has no attribute {name!r}")


def postprocess_function(method: str):
    """The postprocessing function of a ``postprocess.method`` (see :data:`METHODS`).

    Args:
        method: ``"watershed_2d"`` or ``"affinity_watershed"``.
    """
    from emkit.errors import InputError

    if method not in METHODS:
        raise InputError(f"postprocess.method: got {method!r}; allowed: {', '.join(METHODS)}")
    module, function = METHODS[method].split(":")
    return getattr(importlib.import_module(module), function)


def check_method_options(method: str, options) -> None:
    """Refuse ``postprocess.options`` that ``method``'s function does not take.

    Args:
        method: ``"watershed_2d"`` or ``"affinity_watershed"``.
        options: the option names (a mapping or an iterable of keys).
    """
    import inspect

    from emkit.errors import InputError

    allowed = [p for p in inspect.signature(postprocess_function(method)).parameters
               if p not in ("boundaries", "affs", "return_fragments")]
    for key in options:
        if key not in allowed:
            raise InputError(f"postprocess.options: unknown key {key!r} for {method}; "
                             f"allowed: {', '.join(allowed)}")


__all__ = [
    "DEFAULT_THRESHOLDS",
    "METHODS",
    "SCORINGS",
    "SEEDS",
    "MergeHistory",
    "RegionGraph",
    "SegmentOptions",
    "affinity_watershed",
    "agglomerate",
    "check_method_options",
    "merge_history",
    "noisy_affinities",
    "postprocess_function",
    "region_graph",
    "segment_affinities",
    "watershed_2d",
]
