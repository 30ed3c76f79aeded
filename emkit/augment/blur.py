"""Per-section Gaussian blur: sections the microscope imaged out of focus.

The DeepSeg thesis (section 2.4.1, and figure 1.2's right panel) blurs individual
sections; each chosen section gets its own sigma. Labels are untouched.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from emkit.augment.base import Augmentation, check_probability, check_range, uniform


def blur_section(section, sigma: float):
    """A 2D section blurred with a Gaussian of ``sigma`` pixels (kernel 3 sigma each side).

    Args:
        section: ndarray of shape (Y, X), float32.
        sigma: standard deviation in pixels; 0 returns a copy.

    Returns:
        ndarray of shape (Y, X), float32. Edges repeat the border pixels
        (``BORDER_REFLECT_101``); the declared margin keeps them out of the crop.
    """
    if sigma <= 0:
        return np.array(section, dtype=np.float32)
    radius = math.ceil(3 * sigma)
    return cv2.GaussianBlur(
        np.ascontiguousarray(section, dtype=np.float32),
        (2 * radius + 1, 2 * radius + 1),
        sigmaX=sigma,
        sigmaY=sigma,
        borderType=cv2.BORDER_REFLECT_101,
    )


class Blur(Augmentation):
    """Blurs each section with probability ``section_p``, each with its own sigma.

    Args:
        p: probability that the augmentation runs.
        section_p: probability that each section is blurred when it runs (a one-section
            2D sample is blurred with this probability too).
        sigma: blur standard deviation in pixels, a number or ``[low, high]``.
    """

    name = "blur"

    def __init__(self, *, p: float = 0.5, section_p: float = 0.3, sigma=(0.5, 2.0)):
        super().__init__(p=p)
        self.section_p = check_probability(section_p, "blur: section_p")
        self.sigma = check_range(sigma, "blur: sigma", low=0, high=100)

    def margin(self, shape):
        m = math.ceil(3 * self.sigma[1])
        return (0, m, m)

    def draw(self, rng, shape):
        """Picks the sections to blur, each with probability ``section_p``, and their sigmas.

        Arguments as for :meth:`~emkit.augment.base.Augmentation.draw`.

        Returns:
            ``{"sigmas": {z: sigma}}``, sigma in pixels; empty when no section is chosen.
        """
        sigmas = {}
        for z in range(shape[0]):
            if rng.random() < self.section_p:
                sigmas[z] = uniform(rng, self.sigma)
        return {"sigmas": sigmas}

    def apply(self, raw, labels, params, out_shapes=None):
        """Blurs the chosen sections of a copy of ``raw``; the labels pass through.

        Arguments as for :meth:`~emkit.augment.base.Augmentation.apply`.
        ``out_shapes`` is unused: the declared margin keeps the blurred edges out.

        Returns:
            ``(raw, labels)``, ``raw`` itself when no section was chosen.
        """
        if not params["sigmas"]:
            return raw, labels
        out = raw.copy()
        for z, sigma in params["sigmas"].items():
            out[z] = blur_section(raw[z], sigma)
        return out, labels
