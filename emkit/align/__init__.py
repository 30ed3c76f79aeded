"""Aligning the sections of an EM stack, and measuring how well it is done.

Importing :mod:`emkit.align` needs only NumPy, SciPy and scikit-image. The learned
aligner is the one part that uses Keras: import :mod:`emkit.align.learned` (and
:mod:`emkit.align.learned_model`) explicitly; nothing here imports them, so the
hand-crafted aligner, the generator, the metrics and ``emkit align score`` start fast
and work without TensorFlow.

- :mod:`emkit.align.transforms`: the representation shared by every aligner (hand-crafted
  and learned): per-section 3x3 affine matrices and optional dense displacement
  fields, mapping OUTPUT (aligned) pixel coordinates to INPUT (raw) ones; compose,
  invert, apply.
- :mod:`emkit.align.io`: transforms files (.h5 / .npz), saved atomically, and loaded.
- :mod:`emkit.align.generator`: a misalignment benchmark; known translations (drift,
  jitter, slips), rotations and elastic distortions, and the true transforms.
- :mod:`emkit.align.xcorr`: the hand-crafted aligner (cross-correlation, block matching,
  RANSAC, drift removal).
- :mod:`emkit.align.metrics`: neighbour cross-correlation and residual displacement.
- :mod:`emkit.align.learned_model` (Keras): the pair network around
  :class:`~emkit.models.spatial_transformer.SpatialTransformer`, its NCC, smoothness
  and supervised losses; :mod:`emkit.align.learned` (Keras): its training data,
  training with checkpoints and tracking, and :func:`~emkit.align.learned.align_learned`;
  :mod:`emkit.recipes.align_schema`: the ``task: align`` recipes (trained by
  :mod:`emkit.recipes.align_run`).

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
from emkit.align.io import (
    is_transforms_file,
    load_transforms,
    read_transforms_attrs,
    save_transforms,
)
from emkit.align.metrics import (
    ResidualError,
    ncc_scores,
    neighbour_ncc,
    residual_displacement,
)
from emkit.align.transforms import (
    Transforms,
    apply_transforms,
    compose,
    concatenate,
    from_translations,
    identity_transforms,
    invert,
    map_points,
    normalized_to_affine,
    rigid_matrix,
    valid_mask,
)
from emkit.align.xcorr import REFINEMENTS, align_xcorr, estimate_shift, register_pair, remove_drift

__all__ = [
    "REFINEMENTS",
    "MisalignedStack",
    "ResidualError",
    "Transforms",
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
    "normalized_to_affine",
    "read_transforms_attrs",
    "register_pair",
    "remove_drift",
    "residual_displacement",
    "rigid_matrix",
    "save_transforms",
    "valid_mask",
]
