"""Training targets from labels: affinities, boundaries and segmentations.

Plain NumPy/SciPy (with ``cc3d`` and ``fastremap``); nothing here imports Keras or
TensorFlow. Conventions (see ``shared/STYLE.md``):

* Axes are ``(z, y, x[, c])`` with channels last. 2D inputs are ``(y, x)``.
* Label 0 in a ``seg`` means "unlabelled / boundary".
* An affinity channel for offset ``d`` at voxel ``v`` is 1 when ``v`` and ``v - d``
  carry the same nonzero label, else 0 (Turaga et al. 2010). Edges that leave the
  volume or touch label 0 are masked (mask 0), not guessed.
* Boundary maps are ``uint8`` 0/1 (1 = boundary).
* Segmentations made here (:func:`boundaries_to_seg`, :func:`isbi_labels_to_seg`,
  :func:`relabel_sections`) are ``uint64``, like CREMI's ``neuron_ids``, with ids
  consecutive from 1 and 0 on boundaries.
* Inputs are never modified; options are keyword-only.

Modules: :mod:`.affinities` (seg <-> affinities), :mod:`.boundaries` (seg <-> boundary
maps), :mod:`.labels` (relabelling), :mod:`.isbi` (ISBI 2012 0/255 labels).
"""

from emkit.targets.affinities import (
    DEFAULT_OFFSETS,
    DEFAULT_OFFSETS_2D,
    affinities_to_boundaries,
    seg_to_affinities,
)
from emkit.targets.boundaries import boundaries_to_seg, seg_to_boundaries
from emkit.targets.isbi import isbi_labels_to_boundaries, isbi_labels_to_seg
from emkit.targets.labels import relabel_consecutive, relabel_sections

__all__ = [
    "DEFAULT_OFFSETS",
    "DEFAULT_OFFSETS_2D",
    "affinities_to_boundaries",
    "boundaries_to_seg",
    "isbi_labels_to_boundaries",
    "isbi_labels_to_seg",
    "relabel_consecutive",
    "relabel_sections",
    "seg_to_affinities",
    "seg_to_boundaries",
]
