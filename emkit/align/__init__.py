"""Aligning the sections of an EM stack, and measuring how well it is done.

Plain NumPy, SciPy and scikit-image: this package never imports Keras or TensorFlow.

- :mod:`emkit.align.transforms`: the representation shared by every aligner (hand-crafted
  here, learned later): per-section 3x3 affine matrices and optional dense displacement
  fields, mapping OUTPUT (aligned) pixel coordinates to INPUT (raw) ones; compose,
  invert, apply, save and load.
- :mod:`emkit.align.generator`: a misalignment benchmark; known translations (drift,
  jitter, slips), rotations and elastic distortions, and the true transforms.
- :mod:`emkit.align.xcorr`: the hand-crafted aligner (cross-correlation, block matching,
  RANSAC, drift removal).
- :mod:`emkit.align.metrics`: neighbour cross-correlation and residual displacement.

>>> import numpy as np
>>> from emkit.align import align_xcorr, apply_transforms
>>> from emkit.io import read_volume
>>> section = read_volume("emkit:isbi2012/train-volume", roi=np.s_[0, :128, :128])
>>> stack = np.stack([section, np.roll(section, (3, -2), axis=(0, 1))])
>>> transforms = align_xcorr(stack, drift_sigma=None)
>>> (transforms.matrices[1, :2, 2] - transforms.matrices[0, :2, 2]).round(2).tolist()
[3.0, -2.0]
"""

from emkit.align.generator import MisalignedStack, draw_motions, misalign_stack
from emkit.align.metrics import (
    ResidualError,
    ncc_scores,
    neighbour_ncc,
    residual_displacement,
)
from emkit.align.transforms import (
    Transforms,
    affine_from_normalized,
    apply_transforms,
    compose,
    concatenate,
    from_translations,
    identity_transforms,
    invert,
    is_transforms_file,
    load_transforms,
    map_points,
    read_transforms_attrs,
    rigid_matrix,
    save_transforms,
    valid_mask,
)
from emkit.align.xcorr import REFINEMENTS, align_xcorr, estimate_shift, register_pair, remove_drift

__all__ = [
    "REFINEMENTS",
    "MisalignedStack",
    "ResidualError",
    "Transforms",
    "affine_from_normalized",
    "align_xcorr",
    "apply_transforms",
    "compose",
    "concatenate",
    "draw_motions",
    "estimate_shift",
    "from_translations",
    "identity_transforms",
    "invert",
    "is_transforms_file",
    "load_transforms",
    "map_points",
    "misalign_stack",
    "ncc_scores",
    "neighbour_ncc",
    "read_transforms_attrs",
    "register_pair",
    "remove_drift",
    "residual_displacement",
    "rigid_matrix",
    "save_transforms",
    "valid_mask",
]
