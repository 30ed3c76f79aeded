"""The Dataset record, and splitting a data set into train and validation by sections."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from emkit.errors import InputError
from emkit.io import require_ndim

LABEL_KINDS = ("segmentation", "isbi")


@dataclass(frozen=True)
class Dataset:
    """A data set: raw volume, labels, and what is known about them.

    Volumes are lazy :class:`~emkit.io.Volume` objects (or ndarrays) of shape (Z, Y, X);
    index them to read.

    Attributes:
        name: e.g. ``"isbi2012"``.
        raw: ndarray of shape (Z, Y, X), the EM images.
        labels: ndarray of shape (Z, Y, X), or None. Meaning set by ``label_kind``.
        mask: ndarray of shape (Z, Y, X), nonzero where labels are valid, or None.
        test: the unlabelled test volume, ndarray of shape (Z', Y, X), or None.
        voxel_size_nm: voxel size in nm (z, y, x), or None when unknown.
        label_kind: ``"segmentation"`` (object ids; ``unlabelled_value`` means unlabelled)
            or ``"isbi"`` (255 = cell interior, 0 = membrane).
        labelled_sections: for sparse labels, the sections (z) that are labelled; None
            when every section is.
        blank_sections: sections that are blank (missing images).
        unlabelled_value: the label value that means "not labelled", or None.
        validation_sections: the default validation sections for :func:`split_sections`.
        source: where the data came from (a folder or file), for messages.
    """

    name: str
    raw: Any
    labels: Any = None
    mask: Any = None
    test: Any = None
    voxel_size_nm: tuple[float, float, float] | None = None
    label_kind: str = "segmentation"
    labelled_sections: tuple[int, ...] | None = None
    blank_sections: tuple[int, ...] = ()
    unlabelled_value: int | None = 0
    validation_sections: tuple[int, ...] = ()
    source: str = ""

    def __post_init__(self):
        require_ndim(self.raw, 3, name=f"{self.name} raw")
        for role in ("labels", "mask"):
            array = getattr(self, role)
            if array is not None and tuple(array.shape) != tuple(self.raw.shape):
                raise InputError(
                    f"{self.name} {role} have shape {tuple(array.shape)} but raw has shape "
                    f"{tuple(self.raw.shape)}; they must cover the same voxels"
                )
        if self.label_kind not in LABEL_KINDS:
            raise InputError(
                f"label_kind {self.label_kind!r} of {self.name} is not one of {LABEL_KINDS}"
            )
        if self.voxel_size_nm is not None:
            voxel_size = tuple(float(v) for v in self.voxel_size_nm)
            if len(voxel_size) != 3 or min(voxel_size) <= 0:
                raise InputError(
                    f"voxel_size_nm of {self.name} must be 3 positive numbers (nm, z y x), "
                    f"got {self.voxel_size_nm}"
                )
            object.__setattr__(self, "voxel_size_nm", voxel_size)
        for name in ("labelled_sections", "blank_sections", "validation_sections"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _sections(value, self.num_sections, name))

    @property
    def num_sections(self) -> int:
        """The number of sections (z) of ``raw``."""
        return int(self.raw.shape[0])


@dataclass(frozen=True)
class SectionSplit:
    """Sections (z indices) for training and for validation, each sorted."""

    train: tuple[int, ...]
    validation: tuple[int, ...]


def last_sections(num_sections: int, fraction: float) -> tuple[int, ...]:
    """The last ``round(fraction * num_sections)`` sections (at least 1, at most all but 1).

    Args:
        num_sections: the number of sections (z) of the volume, at least 2.
        fraction: the share of sections to return, strictly between 0 and 1.

    >>> last_sections(25, 0.2)
    (20, 21, 22, 23, 24)
    """
    if not 0 < fraction < 1:
        raise InputError(f"validation_fraction must be between 0 and 1, got {fraction}")
    if num_sections < 2:
        raise InputError(f"cannot split {num_sections} section(s) into train and validation")
    count = min(max(1, round(fraction * num_sections)), num_sections - 1)
    return tuple(range(num_sections - count, num_sections))


def split_sections(
    dataset: Dataset,
    *,
    validation=None,
    validation_fraction: float | None = None,
) -> SectionSplit:
    """Splits a data set into train and validation sections (z), never by pixels.

    Args:
        dataset: the data set.
        validation: the validation sections, e.g. ``[20, 21, 22, 23, 24]``.
        validation_fraction: instead, the fraction of sections to validate on, taken from
            the end of the stack. With neither, the data set's ``validation_sections``.

    Returns:
        A :class:`SectionSplit`; train holds every section not in validation.

    >>> import numpy as np
    >>> split_sections(Dataset("toy", np.zeros((5, 2, 2))), validation=[4]).train
    (0, 1, 2, 3)
    """
    n = dataset.num_sections
    if validation is not None and validation_fraction is not None:
        raise InputError("give validation sections or validation_fraction, not both")
    if validation_fraction is not None:
        validation = last_sections(n, validation_fraction)
    elif validation is None:
        validation = dataset.validation_sections
    validation = _sections(validation, n, "validation sections")
    train = tuple(z for z in range(n) if z not in set(validation))
    if not train:
        raise InputError(f"validation {validation} leaves no section of {dataset.name} to train")
    return SectionSplit(train=train, validation=validation)


def section_runs(sections) -> list[range]:
    """Groups sections into runs of consecutive z, e.g. ``[0, 1, 2, 7, 8]`` -> two runs.

    3D samplers should draw patches inside one run so that no patch spans a gap.

    >>> section_runs([0, 1, 2, 7, 8])
    [range(0, 3), range(7, 9)]
    """
    runs: list[range] = []
    for z in sorted({int(s) for s in sections}):
        if runs and runs[-1].stop == z:
            runs[-1] = range(runs[-1].start, z + 1)
        else:
            runs.append(range(z, z + 1))
    return runs


def take_sections(dataset: Dataset, sections) -> Dataset:
    """A data set of the given sections only, read into memory.

    Args:
        dataset: the data set.
        sections: the sections (z) to keep, e.g. ``split.train``.

    Returns:
        A :class:`Dataset` whose arrays are ndarrays of shape (len(sections), Y, X); the
        section attributes are renumbered. Non-consecutive sections are stacked: see
        :func:`section_runs` for 3D work.
    """
    sections = _sections(sections, dataset.num_sections, "sections")
    if not sections:
        raise InputError(f"no sections given to take from {dataset.name}")
    new_z = {z: i for i, z in enumerate(sections)}
    runs = section_runs(sections)

    def take(array):
        if array is None:
            return None
        return np.concatenate([np.asarray(array[run.start:run.stop]) for run in runs])

    def renumber(values):
        return None if values is None else tuple(new_z[z] for z in values if z in new_z)

    return replace(
        dataset,
        raw=take(dataset.raw),
        labels=take(dataset.labels),
        mask=take(dataset.mask),
        labelled_sections=renumber(dataset.labelled_sections),
        blank_sections=renumber(dataset.blank_sections),
        validation_sections=renumber(dataset.validation_sections),
    )


def _sections(values, num_sections: int, name: str) -> tuple[int, ...]:
    try:
        sections = tuple(sorted({int(v) for v in np.asarray(values).reshape(-1)}))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be integers (z), got {values!r}") from exc
    bad = [z for z in sections if not 0 <= z < num_sections]
    if bad:
        raise InputError(
            f"{name} {bad} are outside the {num_sections} sections (0..{num_sections - 1})"
        )
    return sections
