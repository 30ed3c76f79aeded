"""Any volume as a data set: a raw spec, optional labels and mask, and a voxel size."""

from __future__ import annotations

from emkit.datasets.base import Dataset, last_sections
from emkit.datasets.files import DatasetInfo, find_file, require_files
from emkit.errors import InputError
from emkit.io import open_volume


def load_volume(
    raw,
    *,
    labels=None,
    mask=None,
    voxel_size_nm=None,
    name: str = "volume",
    label_kind: str = "segmentation",
    unlabelled_value: int | None = 0,
    validation_fraction: float = 0.2,
    root=None,
) -> Dataset:
    """Makes a data set from volume specs (or arrays).

    Args:
        raw: spec of the raw volume, e.g. ``"sample.h5:volumes/raw"``, or an ndarray of
            shape (Z, Y, X).
        labels: spec or ndarray of the labels, or None.
        mask: spec or ndarray of the mask, or None.
        voxel_size_nm: voxel size in nm (z, y, x); default: the raw file's, if stored.
        name: data set name.
        label_kind: ``"segmentation"`` or ``"isbi"``.
        unlabelled_value: label value meaning "not labelled", or None.
        validation_fraction: fraction of sections, from the end, for validation.
        root: unused (the registry passes it to every loader).

    Returns:
        A :class:`~emkit.datasets.base.Dataset`.
    """
    del root

    def open_(spec):
        return None if spec is None or hasattr(spec, "shape") else open_volume(spec)

    raw_volume = raw if hasattr(raw, "shape") else open_volume(raw)
    labels_volume = labels if hasattr(labels, "shape") else open_(labels)
    mask_volume = mask if hasattr(mask, "shape") else open_(mask)
    if voxel_size_nm is None:
        voxel_size_nm = getattr(raw_volume, "voxel_size_nm", None)
    return Dataset(
        name=name,
        raw=raw_volume,
        labels=labels_volume,
        mask=mask_volume,
        voxel_size_nm=voxel_size_nm,
        label_kind=label_kind,
        unlabelled_value=unlabelled_value,
        validation_sections=last_sections(raw_volume.shape[0], validation_fraction)
        if raw_volume.shape[0] > 1 else (),
        source=str(getattr(raw_volume, "spec", "array")),
    )


def load_challenge(info: DatasetInfo, *, root, raw: str, labels: str, test: str,
                   voxel_size_nm, **fields) -> Dataset:
    """A challenge's training stack from its folder (ISBI 2012, SNEMI3D).

    Args:
        info: The data set's :class:`~emkit.datasets.files.DatasetInfo`.
        root: The data root (see :func:`emkit.datasets.files.data_root`).
        raw, labels: File names of the training images and labels (same shape).
        test: File name of the test volume, used when present.
        voxel_size_nm: Voxel size in nm (z, y, x).
        **fields: Further :class:`~emkit.datasets.base.Dataset` fields (``label_kind``...).

    Returns:
        The :class:`~emkit.datasets.base.Dataset`, the last 20% of the sections for
        validation.

    Raises:
        MissingDataError: a training file is missing.
        InputError: the images and labels differ in shape.
    """
    folder = require_files(info, root=root)
    raw_volume, labels_volume = open_volume(folder / raw), open_volume(folder / labels)
    if raw_volume.shape != labels_volume.shape:
        raise InputError(
            f"{info.name}: images '{folder / raw}' {raw_volume.shape} and labels "
            f"'{folder / labels}' {labels_volume.shape} differ in shape; expected the same"
        )
    test_path = find_file(info, test, root=root)
    return Dataset(name=info.name, raw=raw_volume, labels=labels_volume,
                   test=open_volume(test_path) if test_path else None,
                   voxel_size_nm=voxel_size_nm,
                   validation_sections=last_sections(raw_volume.shape[0], 0.2),
                   source=str(folder), **fields)


VOLUME = DatasetInfo(
    name="volume",
    folder=None,
    files=(),
    roles={},
    url="(your own files)",
    description="any volume: load_dataset('volume', raw=SPEC, labels=SPEC, voxel_size_nm=...)",
    load=load_volume,
)
