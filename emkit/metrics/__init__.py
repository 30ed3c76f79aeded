"""Segmentation metrics, exact and fast, on one sparse contingency table.

NumPy and SciPy, with the counting compiled by numba (:mod:`emkit.metrics.kernels`):
nothing here imports Keras or TensorFlow. Label 0 is documented in
each module: ground-truth 0 is unlabelled and not counted; a predicted 0 is a singleton
segment per voxel (:mod:`emkit.metrics.rand`), except in the CREMI score, which follows
cremi_python (:mod:`emkit.metrics.cremi`).
"""

from emkit.metrics.contingency import Contingency, contingency_table
from emkit.metrics.cremi import CremiScores, border_mask, cremi_score
from emkit.metrics.evaluate import METRICS, evaluate
from emkit.metrics.isbi import IsbiScores, isbi_scores, thinned_segmentation
from emkit.metrics.pixel import pixel_error
from emkit.metrics.rand import RandScores, adapted_rand_error, rand_from_table, rand_scores
from emkit.metrics.voi import InfoScores, info_from_table, variation_of_information

__all__ = [
    "METRICS",
    "Contingency",
    "CremiScores",
    "InfoScores",
    "IsbiScores",
    "RandScores",
    "adapted_rand_error",
    "border_mask",
    "contingency_table",
    "cremi_score",
    "evaluate",
    "info_from_table",
    "isbi_scores",
    "pixel_error",
    "rand_from_table",
    "rand_scores",
    "thinned_segmentation",
    "variation_of_information",
]
