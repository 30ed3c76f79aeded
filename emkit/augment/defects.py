"""EM imaging defects: misaligned sections, missing sections, missing regions, blotches.

Serial-section EM damages sections one at a time (DeepSeg thesis, section 1.4.1):
cutting can translate a section or make everything above a tear slip; a section can be
lost (the stack then holds a blank image or, after gap filling, a copy of its
neighbour); part of a section can be missing; stain can leave dark blotches. DeepEM
(Lee et al. 2017) trains with these defects so that the network learns to bridge them.

* ``misalign`` moves raw *and* labels (the objects really are where the image shows
  them, so targets across the misaligned interface change); ``shift_labels=False``
  moves raw only, and ``keep_center=True`` never moves the centre section: together
  they train a model with a learned aligner in front (``model.align``).
* The other defects change raw only: the labels still say what the tissue is, and the
  network learns to infer it from the neighbouring sections.
* Misalignment and missing sections need neighbours in z: on a one-section (2D) sample
  they do nothing.

Set ``max_defects: 1`` on the sampler to allow at most one defect per sample.

References:
    K. Lee, J. Zung, P. Li, V. Jain, H. S. Seung (2017). Superhuman accuracy on the
    SNEMI3D connectomics challenge. arXiv:1706.00120 (the DeepEM augmentations).
"""

from __future__ import annotations

import numpy as np

from emkit.augment.base import (
    Augmentation,
    check_choice,
    check_int,
    check_probability,
    check_range,
    uniform,
)
from emkit.errors import InputError

# ---------------------------------------------------------------------------- functions


def shift_sections(array, shifts, *, margin: int, z_offset: int = 0):
    """Sections moved in-plane by whole pixels, cut to the centre.

    Args:
        array: ndarray of shape (Z, Y + 2 margin, X + 2 margin), or None.
        shifts: mapping ``{z: (dy, dx)}``: the content of section ``z`` moves by ``dy``
            pixels along y and ``dx`` along x; other sections stay. ``|dy|, |dx| <=
            margin``.
        margin: the pixels cut from each in-plane side.
        z_offset: index in ``shifts`` of this array's section 0 (labels that cover fewer
            sections than raw, concentric with it, use ``(raw_z - labels_z) // 2``).

    Returns:
        ndarray of shape (Z, Y, X) (a copy), or None. ``out[z, y, x] ==
        array[z, margin + y - dy, margin + x - dx]``.

    >>> a = np.arange(10).reshape(1, 1, 10) * np.ones((2, 5, 1), int)
    >>> shift_sections(a, {1: (0, 2)}, margin=2)[:, 0].tolist()
    [[2, 3, 4, 5, 6, 7], [0, 1, 2, 3, 4, 5]]
    """
    if array is None:
        return None
    depth, y, x = array.shape[0], array.shape[1] - 2 * margin, array.shape[2] - 2 * margin
    if y <= 0 or x <= 0:
        raise InputError(f"margin {margin} leaves nothing of a section of shape {array.shape}")
    out = np.array(array[:, margin:margin + y, margin:margin + x])
    for z, (dy, dx) in shifts.items():
        zz = z - z_offset
        if not 0 <= zz < depth:
            continue
        if max(abs(dy), abs(dx)) > margin:
            raise InputError(f"shift {(dy, dx)} of section {z} is larger than margin {margin}")
        out[zz] = array[zz, margin - dy:margin - dy + y, margin - dx:margin - dx + x]
    return out


def fill_region(section, box, value):
    """A copy of a 2D section with ``section[box] = value``.

    Args:
        section: ndarray of shape (Y, X).
        box: an index into the section, e.g. a tuple of two slices (y, x).
        value: the fill value.
    """
    out = np.array(section)
    out[box] = value
    return out


def blotch_factor(shape, center, radius: float, darkness: float):
    """The multiplicative dark-blotch field ``1 - darkness * exp(-r^2 / (2 radius^2))``.

    Args:
        shape: (Y, X) of the section.
        center: (cy, cx) in pixels.
        radius: Gaussian radius in pixels.
        darkness: fraction of intensity removed at the centre, 0..1.

    Returns:
        ndarray of shape (Y, X), float32, 1 - darkness at the centre, -> 1 far away.
    """
    yy = (np.arange(shape[0], dtype=np.float32) - center[0]) ** 2
    xx = (np.arange(shape[1], dtype=np.float32) - center[1]) ** 2
    g = np.exp(-(yy[:, None] + xx[None, :]) / np.float32(2 * radius * radius))
    return (1 - np.float32(darkness) * g).astype(np.float32)


def _window(shape, out_shape):
    """Start (y, x) and size of the centred window that will be kept."""
    out_shape = shape if out_shape is None else out_shape
    return [((n - s) // 2, s) for n, s in zip(shape[1:], out_shape[1:])]


# ---------------------------------------------------------------------------- classes


class Misalign(Augmentation):
    """Translates one section, or slips every section from one up (DeepEM "misalign").

    Args:
        p: probability that the augmentation runs.
        max_shift: largest translation in pixels, along y and along x; each of dy, dx is
            an integer uniform in [-max_shift, max_shift], not both 0.
        slip_p: probability of a slip (sections k, k+1, ... all move) rather than one
            translated section.
        shift_labels: move the labels with the image (default), as DeepEM does.
        keep_center: never move the centre section (``z // 2``): a single translation
            picks another section, and a slip moves the side of the cut away from the
            centre. With ``shift_labels: false`` this is the training signal of a model
            with an aligner in front (``model.align``, reference ``center``): the raw is
            misaligned, the labels stay in the centre section's frame, which is the frame
            the aligner warps the other sections into.
    """

    name = "misalign"
    is_defect = True

    def __init__(self, *, p=0.3, max_shift: int = 10, slip_p: float = 0.5, shift_labels=True,
                 keep_center=False):
        super().__init__(p=p)
        self.max_shift = check_int(max_shift, "misalign: max_shift", minimum=1)
        self.slip_p = check_probability(slip_p, "misalign: slip_p")
        if not isinstance(shift_labels, bool):
            raise InputError(f"misalign: shift_labels must be true or false, got {shift_labels!r}")
        self.shift_labels = shift_labels
        if not isinstance(keep_center, bool):
            raise InputError(f"misalign: keep_center must be true or false, got {keep_center!r}")
        self.keep_center = keep_center

    def margin(self, shape):
        # Declared whatever the depth: labels may cover fewer sections than raw.
        return (0, self.max_shift, self.max_shift)

    def draw(self, rng, shape):
        """Picks the moved sections (one, or a slip) and their common shift.

        Arguments as for :meth:`~emkit.augment.base.Augmentation.draw`.

        Returns:
            ``{"shifts": {z: (dy, dx)}}`` in whole pixels, the same shift for every moved
            section; empty for a one-section sample.
        """
        depth = shape[0]
        if depth < 2:
            return {"shifts": {}}
        m = self.max_shift
        shift = (0, 0)
        while shift == (0, 0):
            shift = tuple(int(v) for v in rng.integers(-m, m + 1, size=2))
        center = depth // 2
        if rng.random() < self.slip_p:
            k = int(rng.integers(1, depth))
            moved = range(k, depth) if not self.keep_center or k > center else range(k)
            return {"shifts": {z: shift for z in moved}}
        if self.keep_center:
            z = int(rng.integers(depth - 1))
            return {"shifts": {z + (z >= center): shift}}
        return {"shifts": {int(rng.integers(depth)): shift}}

    def apply(self, raw, labels, params, out_shapes=None):
        """Moves the chosen sections of raw, and of labels if ``shift_labels``.

        Arguments as for :meth:`~emkit.augment.base.Augmentation.apply`.
        The section indices of ``params`` count in ``raw``'s z.

        Returns:
            ``(raw, labels)``, each cut by ``max_shift`` on each side of y and x (see
            :func:`shift_sections`); unchanged for a one-section sample.
        """
        if raw.shape[0] < 2:
            return raw, labels
        shifts, m = params["shifts"], self.max_shift
        new_raw = shift_sections(raw, shifts, margin=m)
        if labels is not None:
            z_offset = (raw.shape[0] - labels.shape[0]) // 2
            labels = shift_sections(
                labels, shifts if self.shift_labels else {}, margin=m, z_offset=z_offset
            )
        return new_raw, labels


class MissingSection(Augmentation):
    """Replaces whole sections by a blank image or by a copy of a neighbour.

    Args:
        p: probability that the augmentation runs.
        mode: ``"blank"``, ``"duplicate"`` or ``"mixed"`` (each lost section is blank or
            duplicated with probability 1/2).
        value: the blank image's intensity (0 = black, like CREMI's blank sections).
        max_sections: at most this many sections are lost (the number is uniform in
            1..max_sections, and never all sections).
    """

    name = "missing_section"
    is_defect = True

    def __init__(self, *, p=0.3, mode="mixed", value: float = 0.0, max_sections: int = 1):
        super().__init__(p=p)
        self.mode = check_choice(mode, "missing_section: mode", ("blank", "duplicate", "mixed"))
        self.value = check_range(value, "missing_section: value", low=0, high=1)[0]
        self.max_sections = check_int(max_sections, "missing_section: max_sections", minimum=1)

    def draw(self, rng, shape):
        """Picks the lost sections and, for each, blank or the neighbour it copies.

        Arguments as for :meth:`~emkit.augment.base.Augmentation.draw`.

        Returns:
            ``{"sections": {z: ("blank", None) or ("duplicate", source_z)}}``; empty for a
            one-section sample.
        """
        depth = shape[0]
        if depth < 2:
            return {"sections": {}}
        count = int(rng.integers(1, min(self.max_sections, depth - 1) + 1))
        lost = sorted(int(z) for z in rng.choice(depth, size=count, replace=False))
        sections = {}
        for z in lost:
            mode = self.mode if self.mode != "mixed" else ("blank", "duplicate")[rng.integers(2)]
            if mode == "blank":
                sections[z] = ("blank", None)
            else:
                source = z - 1 if z > 0 and (z == depth - 1 or rng.random() < 0.5) else z + 1
                sections[z] = ("duplicate", source)
        return {"sections": sections}

    def apply(self, raw, labels, params, out_shapes=None):
        """Replaces the lost sections of a copy of ``raw``; the labels pass through.

        Arguments and result as for :meth:`~emkit.augment.base.Augmentation.apply`.
        """
        if not params["sections"]:
            return raw, labels
        out = raw.copy()
        for z, (mode, source) in params["sections"].items():
            out[z] = self.value if mode == "blank" else raw[source]
        return out, labels


class MissingRegion(Augmentation):
    """Fills a rectangle of one section with a constant: part of a section is lost.

    Args:
        p: probability that the augmentation runs.
        size: the rectangle's height and width as fractions of the section's, each drawn
            from this ``[low, high]`` range.
        value: the fill intensity (0 = black).
    """

    name = "missing_region"
    is_defect = True

    def __init__(self, *, p=0.3, size=(0.1, 0.5), value: float = 0.0):
        super().__init__(p=p)
        self.size = check_range(size, "missing_region: size", low=0, high=1)
        self.value = check_range(value, "missing_region: value", low=0, high=1)[0]

    def draw(self, rng, shape):
        """Picks the section and the rectangle.

        Arguments as for :meth:`~emkit.augment.base.Augmentation.draw`.

        Returns:
            ``{"z": z, "box": (top, left, height, width)}``, the box in fractions of the
            kept section's height and width.
        """
        z = int(rng.integers(shape[0]))
        height, width = uniform(rng, self.size), uniform(rng, self.size)
        top, left = float(rng.random()) * (1 - height), float(rng.random()) * (1 - width)
        return {"z": z, "box": (top, left, height, width)}

    def apply(self, raw, labels, params, out_shapes=None):
        """Fills the rectangle of a copy of ``raw`` with ``value``; the labels pass through.

        Arguments and result as for :meth:`~emkit.augment.base.Augmentation.apply`.
        The box is placed within the centred window of ``out_shapes[0]`` (all of
        ``raw`` for None).
        """
        (y0, ny), (x0, nx) = _window(raw.shape, out_shapes and out_shapes[0])
        top, left, height, width = params["box"]
        ya, xa = y0 + round(top * ny), x0 + round(left * nx)
        box = (slice(ya, ya + round(height * ny)), slice(xa, xa + round(width * nx)))
        out = raw.copy()
        out[params["z"]] = fill_region(raw[params["z"]], box, self.value)
        return out, labels


class DarkBlotch(Augmentation):
    """Darkens a round, soft-edged spot of one section, as uneven staining does.

    Args:
        p: probability that the augmentation runs.
        radius: Gaussian radius of the spot in pixels, a number or ``[low, high]``.
        darkness: fraction of intensity removed at its centre, a number or ``[low, high]``.
    """

    name = "dark_blotch"
    is_defect = True

    def __init__(self, *, p=0.3, radius=(10.0, 40.0), darkness=(0.3, 0.8)):
        super().__init__(p=p)
        self.radius = check_range(radius, "dark_blotch: radius", low=1e-3)
        self.darkness = check_range(darkness, "dark_blotch: darkness", low=0, high=1)

    def draw(self, rng, shape):
        """Picks the section, the spot's centre, radius and darkness.

        Arguments as for :meth:`~emkit.augment.base.Augmentation.draw`.

        Returns:
            ``{"z", "center", "radius", "darkness"}``, ``center`` as fractions (cy, cx) of
            the kept section's height and width, ``radius`` in pixels.
        """
        return {
            "z": int(rng.integers(shape[0])),
            "center": (float(rng.random()), float(rng.random())),
            "radius": uniform(rng, self.radius),
            "darkness": uniform(rng, self.darkness),
        }

    def apply(self, raw, labels, params, out_shapes=None):
        """Darkens the spot on a copy of ``raw`` (:func:`blotch_factor`); labels pass through.

        Arguments and result as for :meth:`~emkit.augment.base.Augmentation.apply`.
        The centre is placed within the centred window of ``out_shapes[0]`` (all of
        ``raw`` for None).
        """
        (y0, ny), (x0, nx) = _window(raw.shape, out_shapes and out_shapes[0])
        cy, cx = params["center"]
        center = (y0 + cy * (ny - 1), x0 + cx * (nx - 1))
        factor = blotch_factor(raw.shape[1:], center, params["radius"], params["darkness"])
        out = raw.copy()
        out[params["z"]] = raw[params["z"]] * factor
        return out, labels
