"""Data augmentation for EM training samples: geometric, elastic, intensity, blur, defects.

Plain NumPy plus ``elasticdeform``, OpenCV and (imported on first use) albumentations;
nothing here imports Keras or TensorFlow. One module per family:

* :mod:`.geometric`: ``flip``, ``transpose``, ``rot90``, ``rotate``
* :mod:`.elastic`: ``elastic`` (elasticdeform; labels at order 0 through the same field)
* :mod:`.intensity`: ``brightness_contrast``, ``gamma``, ``noise``, ``clahe`` (per section)
* :mod:`.blur`: ``blur`` (per-section Gaussian)
* :mod:`.defects`: ``misalign``, ``missing_section``, ``missing_region``, ``dark_blotch``

The interface and conventions (raw float32 in [0, 1], labels unsigned with 0 =
unlabelled, concentric crops, declared margins) are in :mod:`emkit.augment.base`.

>>> import numpy as np
>>> augs = make_augmentations([{"name": "flip", "axes": ["x"]}])
>>> plan = plan_augmentations(augs, (1, 2, 3))
>>> raw = np.arange(6, dtype=np.float32).reshape(1, 2, 3) / 10
>>> out, _ = apply_augmentations(plan, raw, None, np.random.default_rng(1))
>>> out.shape
(1, 2, 3)
"""

from emkit.augment.base import (
    Augmentation,
    AugmentPlan,
    apply_augmentations,
    center_crop,
    choose_augmentations,
    plan_augmentations,
)
from emkit.augment.blur import Blur, blur_section
from emkit.augment.catalog import (
    AUGMENTATIONS,
    augmentation_keys,
    make_augmentation,
    make_augmentations,
)
from emkit.augment.defects import (
    DarkBlotch,
    Misalign,
    MissingRegion,
    MissingSection,
    blotch_factor,
    shift_sections,
)
from emkit.augment.elastic import Elastic, warp
from emkit.augment.geometric import Flip, Rotate, Rotate90, Transpose, flip, rot90_yx, rotate_yx
from emkit.augment.intensity import BrightnessContrast, Clahe, Gamma, Noise

__all__ = [
    "AUGMENTATIONS",
    "AugmentPlan",
    "Augmentation",
    "Blur",
    "BrightnessContrast",
    "Clahe",
    "DarkBlotch",
    "Elastic",
    "Flip",
    "Gamma",
    "Misalign",
    "MissingRegion",
    "MissingSection",
    "Noise",
    "Rotate",
    "Rotate90",
    "Transpose",
    "apply_augmentations",
    "augmentation_keys",
    "blotch_factor",
    "blur_section",
    "center_crop",
    "choose_augmentations",
    "flip",
    "make_augmentation",
    "make_augmentations",
    "plan_augmentations",
    "rot90_yx",
    "rotate_yx",
    "shift_sections",
    "warp",
]
