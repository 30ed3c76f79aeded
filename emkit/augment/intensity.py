"""Intensity augmentations, per section, with ``albumentations``.

Serial sections are cut, stained and imaged one at a time, so brightness, contrast and
noise change from section to section: each section draws its own parameters. emkit
draws every parameter from the sample's generator and calls the albumentations
transform's ``apply`` with it, so results depend on the seed alone (albumentations' own
random state is never used). Raw is float32 in [0, 1]; results are clipped to [0, 1].
Labels are untouched.

albumentations is imported on first use (it takes about a second).
"""

from __future__ import annotations

import os
from functools import cache

import numpy as np

from emkit.augment.base import Augmentation, check_probability, check_range, uniform


@cache
def _transform(name: str, **kwargs):
    """One albumentations transform object, built once (its ``apply`` is stateless)."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations

    return getattr(albumentations, name)(p=1.0, **kwargs)


def _sections(rng, depth, section_p):
    """Which sections of a sample of ``depth`` sections to change (one draw each)."""
    return [z for z in range(depth) if rng.random() < section_p]


class _PerSection(Augmentation):
    """Shared machinery: draw per-section parameters, apply section by section."""

    def __init__(self, *, p, section_p):
        super().__init__(p=p)
        self.section_p = check_probability(section_p, f"{self.name}: section_p")

    def draw(self, rng, shape):
        """Picks the sections to change, each with ``section_p``, and their parameters.

        Arguments as for :meth:`~emkit.augment.base.Augmentation.draw`.

        Returns:
            ``{"sections": {z: keyword arguments of apply_section}}``.
        """
        return {"sections": {z: self.draw_section(rng, shape) for z in _sections(
            rng, shape[0], self.section_p)}}

    def draw_section(self, rng, shape):  # pragma: no cover - overridden
        """The parameters of one section, as keyword arguments of ``apply_section``.

        Args:
            rng: a ``numpy.random.Generator``.
            shape: (Z, Y, X) of the raw array.
        """
        raise NotImplementedError

    def apply(self, raw, labels, params, out_shapes=None):
        """Changes the chosen sections of a copy of ``raw``; the labels pass through.

        Arguments as for :meth:`~emkit.augment.base.Augmentation.apply`.

        Returns:
            ``(raw, labels)``, ``raw`` itself when no section was chosen.
        """
        sections = params["sections"]
        if not sections:
            return raw, labels
        out = raw.copy()
        for z, section_params in sections.items():
            out[z] = self.apply_section(np.ascontiguousarray(raw[z]), **section_params)
        return out, labels


class BrightnessContrast(_PerSection):
    """``x * contrast + brightness`` per section (albumentations RandomBrightnessContrast).

    Args:
        p: probability that the augmentation runs.
        section_p: probability that each section is changed when it runs.
        brightness: additive shift, a number or ``[low, high]``, in raw units (0..1).
        contrast: multiplicative factor, a number or ``[low, high]``.
    """

    name = "brightness_contrast"

    def __init__(self, *, p=0.5, section_p=1.0, brightness=(-0.1, 0.1), contrast=(0.9, 1.1)):
        super().__init__(p=p, section_p=section_p)
        self.brightness = check_range(brightness, "brightness_contrast: brightness", low=-1, high=1)
        self.contrast = check_range(contrast, "brightness_contrast: contrast", low=0)

    def draw_section(self, rng, shape):
        """``{"alpha": contrast, "beta": brightness}`` for one section.

        Arguments as for :meth:`_PerSection.draw_section`.
        """
        return {"alpha": uniform(rng, self.contrast), "beta": uniform(rng, self.brightness)}

    def apply_section(self, section, *, alpha, beta):
        """``section * alpha + beta``, by albumentations.

        Args:
            section: ndarray of shape (Y, X), float32 in [0, 1].
            alpha: the contrast factor.
            beta: the brightness shift, in raw units.
        """
        return _transform("RandomBrightnessContrast").apply(section, alpha=alpha, beta=beta)


class Gamma(_PerSection):
    """``x ** gamma`` per section (albumentations RandomGamma).

    Args:
        p: probability that the augmentation runs.
        section_p: probability that each section is changed when it runs.
        gamma: the exponent, a number or ``[low, high]``; < 1 brightens.
    """

    name = "gamma"

    def __init__(self, *, p=0.5, section_p=1.0, gamma=(0.8, 1.25)):
        super().__init__(p=p, section_p=section_p)
        self.gamma = check_range(gamma, "gamma: gamma", low=1e-3, high=1e3)

    def draw_section(self, rng, shape):
        """``{"gamma": exponent}`` for one section.

        Arguments as for :meth:`_PerSection.draw_section`.
        """
        return {"gamma": uniform(rng, self.gamma)}

    def apply_section(self, section, *, gamma):
        """``section ** gamma``, by albumentations.

        Args:
            section: ndarray of shape (Y, X), float32 in [0, 1].
            gamma: the exponent.
        """
        return _transform("RandomGamma").apply(section, gamma=gamma)


class Noise(_PerSection):
    """Additive Gaussian noise per section (albumentations GaussNoise's ``apply``).

    Args:
        p: probability that the augmentation runs.
        section_p: probability that each section is changed when it runs.
        std: noise standard deviation in raw units (0..1), a number or ``[low, high]``.
    """

    name = "noise"

    def __init__(self, *, p=0.5, section_p=1.0, std=(0.0, 0.05)):
        super().__init__(p=p, section_p=section_p)
        self.std = check_range(std, "noise: std", low=0, high=1)

    def draw(self, rng, shape):
        """Picks the sections, a std for each, and draws their noise.

        Arguments as for :meth:`~emkit.augment.base.Augmentation.draw`.

        Returns:
            ``{"sections": {z: {"noise_map": ndarray of shape (Y, X), float32}}}``, the
            noise already scaled by the section's std.
        """
        sections = _sections(rng, shape[0], self.section_p)
        # One draw per section for the std, then one noise field for all of them.
        stds = [uniform(rng, self.std) for _ in sections]
        noise = rng.standard_normal((len(sections), *shape[1:]), dtype=np.float32)
        maps = {z: noise[i] * np.float32(s) for i, (z, s) in enumerate(zip(sections, stds))}
        return {"sections": {z: {"noise_map": m} for z, m in maps.items()}}

    def apply_section(self, section, *, noise_map):
        """``section + noise_map``, by albumentations.

        Args:
            section: ndarray of shape (Y, X), float32 in [0, 1].
            noise_map: ndarray of shape (Y, X), float32, the noise to add.
        """
        return _transform("GaussNoise").apply(section, noise_map=noise_map)


class Clahe(_PerSection):
    """Contrast-limited adaptive histogram equalisation per section (albumentations CLAHE).

    CLAHE works on 8-bit images: a section is quantised to 256 grey levels.

    Args:
        p: probability that the augmentation runs.
        section_p: probability that each section is changed when it runs.
        clip_limit: the contrast limit, a number or ``[low, high]``.
        tile: tiles per side of the section grid.
    """

    name = "clahe"

    def __init__(self, *, p=0.2, section_p=1.0, clip_limit=(1.0, 3.0), tile: int = 8):
        super().__init__(p=p, section_p=section_p)
        self.clip_limit = check_range(clip_limit, "clahe: clip_limit", low=0)
        self.tile = int(check_range(tile, "clahe: tile", low=1)[0])

    def draw_section(self, rng, shape):
        """``{"clip_limit": limit}`` for one section.

        Arguments as for :meth:`_PerSection.draw_section`.
        """
        return {"clip_limit": uniform(rng, self.clip_limit)}

    def apply_section(self, section, *, clip_limit):
        """CLAHE of one section with ``tile`` x ``tile`` tiles, by albumentations.

        Args:
            section: ndarray of shape (Y, X), float32 in [0, 1].
            clip_limit: the contrast limit.
        """
        transform = _transform("CLAHE", tile_grid_size=(self.tile, self.tile))
        return transform.apply(section, clip_limit=clip_limit)
