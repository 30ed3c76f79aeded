"""A misalignment benchmark: misalign a well-aligned stack with known transforms.

Each section ``z`` of the misaligned stack is the original section moved by a rigid
motion plus a smooth elastic distortion. The generator returns the transforms that undo
it, in the convention of :mod:`emkit.align.transforms` (aligned -> raw coordinates)::

    T_z(p) = R(theta_z) (p - c) + c + t_z + e_z(p)

- ``t_z``, the translation (the section's displacement in pixels): a random walk of
  steps ``N(0, drift_px)`` (slow drift of the cutting), plus jitter ``N(0, jitter_px)``
  per section, plus slips: with probability ``slip_p`` a section is displaced by a step
  uniform in ``[-slip_px, slip_px]`` per axis, and every later section follows it (as
  when the block moves during serial sectioning). The mean over z is removed.
- ``theta_z ~ N(0, rotation_deg)``, a rotation about the centre ``c`` of the section.
- ``e_z``: a ``elastic_grid`` x ``elastic_grid`` grid of ``N(0, elastic_px)`` vectors
  spanning the section, upsampled by a cubic spline to every pixel.

Cropping: the misaligned section ``q`` samples the original at ``T_z^-1(q)``, which moves
up to ``margin`` pixels; so that no padding shows, the generator works in the original
cropped by ``margin`` on each side of y and x. ``original[:, m:-m, m:-m]`` is the truth
frame: ``apply_transforms(result.raw, result.transforms)`` gives it back where
:func:`~emkit.align.transforms.valid_mask` is true, up to interpolation. ``margin`` is
chosen from the drawn motions (their bound plus 2 pixels) unless given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from emkit.align.transforms import (
    Transforms,
    apply_transforms,
    compose,
    from_translations,
    invert,
    rigid_matrix,
    sampling_grid,
)
from emkit.errors import InputError


@dataclass(frozen=True, eq=False)
class MisalignedStack:
    """The output of :func:`misalign_stack`.

    Attributes:
        raw: ndarray of shape (Z, Y - 2m, X - 2m), the misaligned stack.
        labels: the labels misaligned identically (nearest neighbour), or None.
        transforms: the true transforms that undo the misalignment: they map the truth
            frame (the original cropped by ``margin``) to ``raw``.
        margin: ``m``, pixels cropped from each side of y and x.
    """

    raw: np.ndarray
    labels: np.ndarray | None
    transforms: Transforms
    margin: int

    def crop(self, original: np.ndarray) -> np.ndarray:
        """The truth frame of an original stack: ``original[:, m:-m, m:-m]``."""
        m = self.margin
        return original[:, m:original.shape[1] - m, m:original.shape[2] - m]


def draw_motions(num_sections: int, *, seed=0, drift_px=0.2, jitter_px=1.0, slip_p=0.1,
                 slip_px=5.0, rotation_deg=0.5, elastic_px=1.0, elastic_grid=4) -> dict:
    """Draws the random motions (see the module docstring) with a seeded generator.

    Args:
        num_sections: ``Z``, the number of sections to draw motions for.
        seed: seed of the random generator; the same seed gives the same motions.
        drift_px: standard deviation in pixels of each step of the translation's random walk.
        jitter_px: standard deviation in pixels of the independent per-section jitter.
        slip_p: probability that a section (other than the first) slips.
        slip_px: a slip moves by a step uniform in ``[-slip_px, slip_px]`` per axis.
        rotation_deg: standard deviation in degrees of each section's rotation.
        elastic_px: standard deviation in pixels of the elastic control vectors (0: none).
        elastic_grid: ``g``, control points per axis of the elastic grid (>= 2).

    Returns:
        A dict of ndarrays: ``translations`` (Z, 2), ``angles_deg`` (Z,), ``elastic``
        (Z, g, g, 2) control vectors in pixels, and ``slips`` (the sections that slipped).
    """
    for name, value in (("drift_px", drift_px), ("jitter_px", jitter_px),
                        ("slip_px", slip_px), ("rotation_deg", rotation_deg),
                        ("elastic_px", elastic_px)):
        if not value >= 0:
            raise InputError(f"{name} must be >= 0, got {value!r}")
    if not 0 <= slip_p <= 1:
        raise InputError(f"slip_p must be a probability in [0, 1], got {slip_p!r}")
    if int(elastic_grid) < 2:
        raise InputError(f"elastic_grid must be >= 2 control points, got {elastic_grid!r}")
    rng = np.random.default_rng(seed)
    z = int(num_sections)
    drift = np.cumsum(rng.normal(0.0, drift_px, (z, 2)), axis=0)
    jitter = rng.normal(0.0, jitter_px, (z, 2))
    slipped = (rng.random(z) < slip_p) & (np.arange(z) > 0)
    steps = rng.uniform(-slip_px, slip_px, (z, 2)) * slipped[:, None]
    translations = drift + jitter + np.cumsum(steps, axis=0)
    translations -= translations.mean(axis=0)
    g = int(elastic_grid)
    return {
        "translations": translations,
        "angles_deg": rng.normal(0.0, rotation_deg, z),
        "elastic": rng.normal(0.0, elastic_px, (z, g, g, 2)) if elastic_px > 0 else None,
        "slips": np.flatnonzero(slipped),
    }


def motions_to_transforms(motions: dict, shape) -> Transforms:
    """The transforms ``T_z`` of drawn motions on an output grid ``shape`` (Y, X).

    Args:
        motions: the dict returned by :func:`draw_motions`.
        shape: (Y, X) of the output (truth) frame; rotations are about its centre and
            the elastic control grid spans it.

    Returns:
        :class:`~emkit.align.transforms.Transforms` with one matrix per section, and
        fields (Z, Y, X, 2) when ``motions["elastic"]`` is not None.
    """
    shape = tuple(int(n) for n in shape)
    center = [(n - 1) / 2 for n in shape]
    matrices = [rigid_matrix(rotation_deg=a, translation=t, center=center)
                for a, t in zip(motions["angles_deg"], motions["translations"])]
    control = motions["elastic"]
    if control is None:
        return Transforms(np.stack(matrices))
    g = control.shape[1]
    # Control points span the section: pixel 0 at control 0, pixel n - 1 at control g - 1.
    coords = np.indices(shape, dtype=np.float64)
    coords = [c * (g - 1) / max(n - 1, 1) for c, n in zip(coords, shape)]
    fields = np.stack([
        np.stack([ndi.map_coordinates(c[..., k], coords, order=3, mode="nearest")
                  for k in range(2)], axis=-1)
        for c in control
    ])
    return Transforms(np.stack(matrices), fields)


def misalign_stack(raw, *, labels=None, seed=0, drift_px=0.2, jitter_px=1.0, slip_p=0.1,
                   slip_px=5.0, rotation_deg=0.5, elastic_px=1.0, elastic_grid=4,
                   margin=None, order=3) -> MisalignedStack:
    """Misaligns a well-aligned stack with known, seeded motions.

    Args:
        raw: ndarray of shape (Z, Y, X), the well-aligned stack.
        labels: ndarray of shape (Z, Y, X) to misalign identically (order 0), or None.
        seed: seed of the random generator; the same seed gives the same result.
        drift_px, jitter_px, slip_p, slip_px, rotation_deg, elastic_px, elastic_grid:
            the motions, see the module docstring (pixels, degrees).
        margin: pixels cropped from each side; default: the motions' bound + 2.
        order: interpolation order for ``raw`` (3: cubic spline; labels always 0).

    Returns:
        A :class:`MisalignedStack`.

    Raises:
        InputError: ``raw`` is not 3D, ``labels`` does not match it, or the section is
            too small for the motions.
    """
    raw = np.asarray(raw)
    if raw.ndim != 3:
        raise InputError(f"misalign_stack needs a (z, y, x) stack, got shape {raw.shape}")
    if labels is not None and np.shape(labels) != raw.shape:
        raise InputError(f"labels have shape {np.shape(labels)}, raw has {raw.shape}")
    motions = draw_motions(len(raw), seed=seed, drift_px=drift_px, jitter_px=jitter_px,
                           slip_p=slip_p, slip_px=slip_px, rotation_deg=rotation_deg,
                           elastic_px=elastic_px, elastic_grid=elastic_grid)
    auto = margin is None
    if auto:
        radius = np.hypot(*raw.shape[1:]) / 2
        bound = (np.abs(motions["translations"]).max()
                 + np.deg2rad(np.abs(motions["angles_deg"]).max()) * radius
                 + (0 if motions["elastic"] is None else np.abs(motions["elastic"]).max()))
        margin = int(np.ceil(bound)) + 2
    for _ in range(4):  # an automatic margin grows until every sample is inside
        margin = int(margin)
        shape = (raw.shape[1] - 2 * margin, raw.shape[2] - 2 * margin)
        if min(shape) < 16:
            raise InputError(
                f"sections of {raw.shape[1:]} are too small for a margin of {margin} pixels; "
                "use larger sections or smaller motions"
            )
        truth = motions_to_transforms(motions, shape)
        # The misaligned section samples the original at T^-1(q) + margin.
        offset = from_translations(np.full((len(raw), 2), float(margin)))
        sample = compose(offset, invert(truth))
        excess = max(_excess(sample, z, shape, raw.shape[1:]) for z in range(len(raw)))
        if excess <= 0:
            break
        if not auto:
            raise InputError(
                f"margin {margin} is too small for these motions: samples fall up to "
                f"{excess:.1f} pixels outside the section; use a margin of at least "
                f"{margin + int(np.ceil(excess))}"
            )
        margin += int(np.ceil(excess)) + 1
    else:
        raise InputError(f"no margin keeps the motions of seed {seed} inside {raw.shape[1:]}")
    out_raw = apply_transforms(raw, sample, order=order, output_shape=shape)
    out_labels = None
    if labels is not None:
        out_labels = apply_transforms(np.asarray(labels), sample, order=0, output_shape=shape)
    return MisalignedStack(out_raw, out_labels, truth, margin)


def _excess(sample, z, shape, input_shape) -> float:
    """How far (pixels) the samples of section z fall outside the input; <= 0: inside."""
    coords = sampling_grid(sample, z, shape)
    upper = coords.max(axis=(1, 2)) - (np.array(input_shape) - 1)
    return float(max(-coords.min(), upper.max()))
