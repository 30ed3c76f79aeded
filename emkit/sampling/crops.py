"""Reading crops of volumes, and drawing where a training window may go.

Plain NumPy. A crop may reach outside the volume: raw is then mirrored (``reflect``,
as the U-Net paper pads) and labels are 0 (unknown, so masked).
"""

from __future__ import annotations

import numpy as np

from emkit.datasets.base import section_runs
from emkit.errors import InputError


def read_crop(volume, start, shape, *, bounds=None):
    """Reads the part of a box that lies inside ``bounds``, and how much is missing.

    Args:
        volume: ndarray or lazy :class:`~emkit.io.Volume` of shape (Z, Y, X).
        start: (z, y, x) of the box's first voxel; may be negative.
        shape: (Z', Y', X') of the box.
        bounds: per-axis ``(low, high)`` of the readable region (default: the volume).

    Returns:
        ``(data, pad)``: ``data`` is the readable part (a view for an ndarray), ``pad``
        the ``(before, after)`` voxels missing on each axis, for ``np.pad``.
    """
    if bounds is None:
        bounds = [(0, n) for n in volume.shape]
    lo = [max(s, b[0]) for s, b in zip(start, bounds)]
    hi = [min(s + n, b[1]) for s, n, b in zip(start, shape, bounds)]
    if any(h <= a for a, h in zip(lo, hi)):
        data = np.zeros([0] * len(shape), dtype=volume.dtype)
        return data, None
    data = volume[tuple(slice(a, h) for a, h in zip(lo, hi))]
    pad = [(a - s, s + n - h) for a, h, s, n in zip(lo, hi, start, shape)]
    return data, pad


def pad_crop(data, pad, shape, *, mode):
    """``data`` padded to the box ``shape`` (``mode`` ``"reflect"`` or ``"constant"`` 0).

    Args:
        data: the readable part of the box, from :func:`read_crop`.
        pad: the ``(before, after)`` voxels missing on each axis, from :func:`read_crop`,
            or None when nothing of the box was readable.
        shape: (Z', Y', X') of the box.
        mode: ``"reflect"`` (raw; an axis of length 1 is repeated) or ``"constant"``
            (labels, filled with 0).

    Returns:
        ndarray of shape ``shape``; ``data`` itself when nothing is missing.

    Raises:
        InputError: ``mode="reflect"`` and the box lies wholly outside the volume.
    """
    if pad is None:  # nothing of the box was readable
        if mode == "reflect":
            raise InputError(f"a crop of shape {tuple(shape)} lies wholly outside the volume")
        return np.zeros(shape, dtype=data.dtype)
    if not any(b or a for b, a in pad):
        return data
    if mode == "reflect":
        # np.pad cannot reflect an axis of length 1: repeat it instead.
        if any(n == 1 and (b or a) for n, (b, a) in zip(data.shape, pad)):
            return np.pad(data, pad, mode="edge")
        return np.pad(data, pad, mode="reflect")
    return np.pad(data, pad, mode="constant")


class Locations:
    """Where an output window may start, and drawing one at random.

    A window is allowed when:

    * along y and x, the output window lies inside the volume (or, if the volume is
      smaller than it, is centred on the volume);
    * along z, the whole read box (input window plus augmentation margins) lies inside
      one run of consecutive allowed ``sections``, so no patch spans a gap and no
      training input reads a validation section;
    * the output window holds at least one of ``labelled_sections`` (if given);
    * the centre voxel of the output window is nonzero in ``mask`` (if given).

    Windows are drawn uniformly among the allowed ones (with a mask: uniformly among the
    allowed centre voxels).

    Args:
        volume_shape: (Z, Y, X).
        out_shape: the output window (Z, Y, X) (Z = 1 for a 2D model).
        read_z: (sections before, sections after) the output window that are read.
        sections: the sections that may be read, or None for all.
        labelled_sections: sections with labels, or None when all are labelled.
        mask: None, or an array of shape (Z, Y, X), nonzero where windows may be
            centred (read into memory once).
    """

    def __init__(self, volume_shape, out_shape, read_z, *, sections=None,
                 labelled_sections=None, mask=None):
        self.volume_shape = tuple(int(n) for n in volume_shape)
        self.out_shape = tuple(int(n) for n in out_shape)
        nz = self.volume_shape[0]
        sections = range(nz) if sections is None else sections
        runs = section_runs(sections)
        if runs and (runs[0].start < 0 or runs[-1].stop > nz):
            raise InputError(f"sections {list(sections)} are outside the volume's {nz} sections")
        labelled = None if labelled_sections is None else {int(z) for z in labelled_sections}
        oz = self.out_shape[0]
        before, after = read_z
        starts, run_of = [], []
        for run in runs:
            for z0 in range(run.start + before, run.stop - after - oz + 1):
                if labelled is not None and not labelled.intersection(range(z0, z0 + oz)):
                    continue
                starts.append(z0)
                run_of.append((run.start, run.stop))
        if not starts:
            lengths = [len(r) for r in runs]
            need = before + oz + after
            why = f"a window reads {need} consecutive sections; the runs have {lengths}"
            if labelled is not None:
                why += f" and must hold a labelled section {sorted(labelled)}"
            raise InputError(f"no training window fits the sections: {why}")
        self.z_starts = np.array(starts)
        self.runs = run_of
        # Output window starts along y and x: [0, N - O], or centred when N < O.
        self.yx_ranges = []
        for n, o in zip(self.volume_shape[1:], self.out_shape[1:]):
            self.yx_ranges.append((0, n - o) if n >= o else (-((o - n) // 2),) * 2)
        self.mask = None
        if mask is not None:
            self._init_mask(mask)

    def _init_mask(self, mask):
        if tuple(mask.shape) != self.volume_shape:
            raise InputError(
                f"mask has shape {tuple(mask.shape)} but the volume has {self.volume_shape}"
            )
        half = [n // 2 for n in self.out_shape]
        (y_lo, y_hi), (x_lo, x_hi) = self.yx_ranges
        centres_z = self.z_starts + half[0]
        ys = slice(max(y_lo + half[1], 0), y_hi + half[1] + 1)
        xs = slice(max(x_lo + half[2], 0), x_hi + half[2] + 1)
        planes = np.stack([np.asarray(mask[int(z)][ys, xs]) != 0 for z in centres_z])
        self.mask = planes
        self._mask_origin = (ys.start - half[1], xs.start - half[2])
        counts = planes.reshape(len(planes), -1).sum(axis=1)
        if counts.sum() == 0:
            raise InputError("the mask allows no training window (it is 0 at every centre)")
        self._cumulative = np.cumsum(counts)
        self._flat = {}

    @property
    def count(self) -> int:
        """How many windows are allowed."""
        if self.mask is not None:
            return int(self._cumulative[-1])
        (y_lo, y_hi), (x_lo, x_hi) = self.yx_ranges
        return len(self.z_starts) * (y_hi - y_lo + 1) * (x_hi - x_lo + 1)

    def run_bounds(self, z0: int) -> tuple[int, int]:
        """The run (start, stop) of sections that the window starting at z0 lies in."""
        return self.runs[int(np.searchsorted(self.z_starts, z0))]

    def draw(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """A random allowed output-window start (z, y, x)."""
        if self.mask is None:
            z0 = int(self.z_starts[rng.integers(len(self.z_starts))])
            (y_lo, y_hi), (x_lo, x_hi) = self.yx_ranges
            return z0, int(rng.integers(y_lo, y_hi + 1)), int(rng.integers(x_lo, x_hi + 1))
        k = int(rng.integers(self._cumulative[-1]))
        i = int(np.searchsorted(self._cumulative, k, side="right"))
        before = int(self._cumulative[i - 1]) if i else 0
        flat = self._flat.get(i)
        if flat is None:
            flat = self._flat[i] = np.flatnonzero(self.mask[i])
        y, x = np.unravel_index(flat[k - before], self.mask[i].shape)
        return (
            int(self.z_starts[i]),
            int(y) + self._mask_origin[0],
            int(x) + self._mask_origin[1],
        )
