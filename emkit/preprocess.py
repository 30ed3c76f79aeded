"""Intensity preprocessing of EM stacks (thesis sections 1.4.2 and 2.5).

Plain NumPy/SciPy. A recipe's ``preprocess`` section names the method; training applies it
to the whole volume before sampling, and ``emkit predict`` applies the same method (read
from the ``recipe.yaml`` beside a run's model) before tiled inference, so a model always
sees the intensities it was trained on.
"""

from __future__ import annotations

import numpy as np

from emkit.errors import InputError

METHODS = ("none", "standardize", "whiten")


def raw_to_unit(raw):
    """EM intensities as float32 in [0, 1].

    Args:
        raw: ndarray of any shape. Unsigned integers are divided by their dtype's
            maximum (uint8 by 255); floats are taken to be in [0, 1] already.

    Returns:
        float32 ndarray of the same shape (a new array, unless ``raw`` is float32).

    >>> raw_to_unit(np.array([0, 51, 255], np.uint8)).tolist()
    [0.0, 0.20000000298023224, 1.0]
    """
    raw = np.asarray(raw)
    if raw.dtype.kind == "u":
        return np.divide(raw, np.float32(np.iinfo(raw.dtype).max), dtype=np.float32)
    if raw.dtype.kind == "f":
        return raw.astype(np.float32, copy=False)
    raise InputError(f"raw must have an unsigned integer or float dtype, got {raw.dtype}")


def preprocess(raw: np.ndarray, *, method: str = "none", sigma: float = 16.0,
               clip_sigma: float = 3.0) -> np.ndarray:
    """Per-section intensity preprocessing (thesis section 1.4.2), to float32 in [0, 1].

    Args:
        raw: ndarray of shape (Z, Y, X).
        method: ``"none"`` (returned as it is: the sampler and predictor scale uint8
            by 1/255), ``"standardize"`` (zero mean, unit variance per section) or
            ``"whiten"`` (minus a Gaussian local mean of width ``sigma``, divided by the
            local standard deviation).
        clip_sigma: +-this many standard deviations map to 0 and 1.

    >>> raw = np.array([[[0, 2], [4, 6]]], np.uint8)
    >>> (preprocess(raw, method="standardize", clip_sigma=2) * 100).round().astype(int).tolist()
    [[[16, 39], [61, 84]]]
    """
    if method == "none":
        return raw
    x = raw_to_unit(raw).astype(np.float32, copy=True)
    if method == "standardize":
        mean = x.mean(axis=(1, 2), keepdims=True)
        std = x.std(axis=(1, 2), keepdims=True)
    elif method == "whiten":
        from scipy.ndimage import gaussian_filter

        s = (0, sigma, sigma)
        mean = gaussian_filter(x, s)
        std = np.sqrt(np.maximum(gaussian_filter(x * x, s) - mean * mean, 0))
    else:
        raise InputError(f"preprocess.method: got {method!r}; allowed: none, standardize, whiten")
    x = (x - mean) / np.maximum(std, 1e-6)
    return np.clip(0.5 + x / (2 * clip_sigma), 0, 1).astype(np.float32)
