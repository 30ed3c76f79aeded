"""Simulated affinity predictions from ground truth, for tests and benchmarks.

The model works on logits, as a network's sigmoid output does. It starts from the
exact affinities of ``seg`` (:func:`~emkit.targets.seg_to_affinities`: 1 inside an
object, 0 across a boundary and next to label 0), one channel at a time:

1. **Confidence.** Logit ``+confidence`` where the exact affinity is 1 and
   ``-confidence`` where it is 0; the default 2.2 gives 0.9 and 0.1.
2. **Correlated noise.** Add Gaussian noise of standard deviation ``noise`` (in
   logits), smoothed by a Gaussian filter of ``noise_smoothing`` voxels: network errors
   are spatially smooth, not independent per voxel. A fraction ``shared`` of its
   variance is one field common to all channels (an uncertain spot affects all edges
   there), the rest is drawn per channel. With the defaults about 5% of the boundary
   edges read above 0.5 and 4% of the interior edges below.
3. **Sigmoid** to probabilities in (0, 1).
4. **Leaks.** In ``leaks`` balls of radius ``leak_radius`` voxels, placed uniformly at
   random, the boundary edges (exact affinity 0, both ends labelled) get affinities
   drawn uniformly from [0.5, 1): holes in a membrane, through which a voxel-level
   decision merges two objects.

The defaults make a test that thresholding plus connected components fails (the leaks
merge objects) while watershed plus mean-affinity agglomeration passes.
"""

from __future__ import annotations

import numpy as np

from emkit.targets import seg_to_affinities


def noisy_affinities(
    seg,
    *,
    confidence=2.2,
    noise=1.3,
    noise_smoothing=2.0,
    shared=0.5,
    leaks=None,
    leak_radius=2,
    seed=0,
):
    """Affinities of ``seg`` degraded by the module's noise model.

    Args:
        seg: ndarray of shape (Z, Y, X), integer labels; 0 is unlabelled.
        confidence: logit of an exact affinity of 1 (minus it for 0), before noise.
        noise: standard deviation of the added noise, in logits.
        noise_smoothing: sigma (voxels) of the Gaussian filter that correlates the noise;
            0 for independent noise.
        shared: fraction in [0, 1] of the noise variance common to all channels.
        leaks: number of leak balls; None means one per 20,000 voxels.
        leak_radius: radius of each ball in voxels.
        seed: seed of the random generator.

    Returns:
        ndarray of shape (Z, Y, X, 3), float32, channels last, for ``DEFAULT_OFFSETS``.
    """
    rng = np.random.default_rng(seed)
    exact, mask = seg_to_affinities(seg, dtype=np.uint8)
    affs = np.empty(exact.shape, np.float32)
    leak_mask = _balls(seg.shape, leaks if leaks is not None else seg.size // 20000,
                       leak_radius, rng)
    common = _field(seg.shape, noise * np.sqrt(shared), noise_smoothing, rng)
    for c in range(exact.shape[-1]):
        channel = affs[..., c]
        field = _field(seg.shape, noise * np.sqrt(1 - shared), noise_smoothing, rng)
        field += common
        np.multiply(exact[..., c], 2 * confidence, out=channel, casting="unsafe")
        channel -= confidence
        channel += field
        del field
        # sigmoid, in place: 1 / (1 + exp(-x))
        np.negative(channel, out=channel)
        np.exp(channel, out=channel)
        channel += 1
        np.reciprocal(channel, out=channel)
        if leak_mask is not None:
            hole = leak_mask & (exact[..., c] == 0) & (mask[..., c] == 1)
            channel[hole] = rng.uniform(0.5, 1.0, int(hole.sum())).astype(np.float32)
    return affs


def _field(shape, std, smoothing, rng):
    """Gaussian noise of standard deviation ``std``, smoothed by ``smoothing`` voxels."""
    from scipy import ndimage

    field = rng.standard_normal(shape, dtype=np.float32)
    if smoothing > 0:
        field = ndimage.gaussian_filter(field, smoothing, output=np.float32)
    field *= std / max(float(field.std()), 1e-12)
    return field


def _balls(shape, count, radius, rng):
    """Boolean volume of ``count`` balls of ``radius`` at random centres, or None."""
    from scipy import ndimage

    if count <= 0:
        return None
    centres = np.zeros(shape, bool)
    flat = rng.choice(int(np.prod(shape)), size=int(count), replace=False)
    centres.reshape(-1)[flat] = True
    r = int(radius)
    grid = np.mgrid[-r : r + 1, -r : r + 1, -r : r + 1]
    ball = (grid**2).sum(axis=0) <= r * r
    return ndimage.binary_dilation(centres, structure=ball)
