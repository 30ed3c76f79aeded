"""EM data sets: loaders, a registry, and where their files live.

emkit never downloads data. ISBI 2012 (25 training sections) ships with emkit; the others
are read from a data root (``root=``, ``$EMKIT_DATA``, or ``~/.cache/emkit/data``; see
:mod:`emkit.datasets.files`). ``emkit data list`` shows what is found.

>>> from emkit.datasets import load_dataset, split_sections
>>> isbi = load_dataset("isbi2012")
>>> split_sections(isbi).validation
(20, 21, 22, 23, 24)
"""

from emkit.datasets.base import (
    Dataset,
    SectionSplit,
    last_sections,
    section_runs,
    split_sections,
    take_sections,
)
from emkit.datasets.cremi import CREMI, CREMI_C_CROP, load_cremi, load_cremi_c_crop, load_cremi_file
from emkit.datasets.files import (
    DataFile,
    DatasetInfo,
    FileStatus,
    check_files,
    data_root,
    role_spec,
    sha256sum,
    verify_files,
)
from emkit.datasets.isbi2012 import ISBI2012, load_isbi2012
from emkit.datasets.medulla import MEDULLA, load_medulla
from emkit.datasets.snemi3d import SNEMI3D, load_snemi3d
from emkit.datasets.volume import VOLUME, load_volume
from emkit.errors import InputError

# Name -> DatasetInfo (files, download page, loader). A plain, static dict.
DATASETS = {
    "isbi2012": ISBI2012,
    "snemi3d": SNEMI3D,
    "cremi": CREMI,
    "cremi_c_crop": CREMI_C_CROP,
    "medulla": MEDULLA,
    "volume": VOLUME,
}


def get_info(name: str) -> DatasetInfo:
    """The registry entry of a data set, with a clear error for unknown names."""
    if name not in DATASETS:
        raise InputError(f"unknown data set {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def load_dataset(name: str, *, root=None, verify: bool = False, **options) -> Dataset:
    """Loads a registered data set.

    Args:
        name: a key of :data:`DATASETS`, e.g. ``"isbi2012"``.
        root: data root (see :func:`emkit.datasets.files.data_root`).
        verify: check the files' checksums first (:func:`verify_files`).
        **options: passed to the loader (e.g. ``sample="B"`` for CREMI, ``raw=`` for
            ``"volume"``).

    Returns:
        A :class:`Dataset`.

    Raises:
        MissingDataError: files are missing; the message says which and where to put them.
    """
    info = get_info(name)
    if verify:
        verify_files(info, root=root)
    return info.load(root=root, **options)


__all__ = [
    "DATASETS",
    "DataFile",
    "Dataset",
    "DatasetInfo",
    "FileStatus",
    "SectionSplit",
    "check_files",
    "data_root",
    "get_info",
    "last_sections",
    "load_cremi",
    "load_cremi_c_crop",
    "load_cremi_file",
    "load_dataset",
    "load_isbi2012",
    "load_medulla",
    "load_snemi3d",
    "load_volume",
    "role_spec",
    "section_runs",
    "sha256sum",
    "split_sections",
    "take_sections",
    "verify_files",
]
