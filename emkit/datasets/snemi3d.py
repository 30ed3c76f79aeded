"""SNEMI3D: serial-section SEM of mouse cortex, dense neuron labels (not shipped).

Put ``train-input.tif``, ``train-labels.tif`` (and optionally ``test-input.tif``), each
100 x 1024 x 1024, in ``<data root>/snemi3d/``.

Reference:
    Kasthuri et al. (2015), Saturated reconstruction of a volume of neocortex. Cell 162(3).
"""

from __future__ import annotations

from emkit.datasets.base import Dataset, last_sections
from emkit.datasets.files import DataFile, DatasetInfo, find_file, require_files
from emkit.io import open_volume

VOXEL_SIZE_NM = (30.0, 6.0, 6.0)
URL = "https://snemi3d.grand-challenge.org/"


def load_snemi3d(*, root=None) -> Dataset:
    """Loads SNEMI3D from the data root.

    Args:
        root: data root (see :func:`emkit.datasets.files.data_root`).

    Returns:
        A :class:`~emkit.datasets.base.Dataset` with ``raw`` and ``labels`` of shape
        (100, 1024, 1024), voxel size (30, 6, 6) nm, the last 20 sections for validation.

    Raises:
        MissingDataError: the files are not in ``<root>/snemi3d/``.
    """
    folder = require_files(SNEMI3D, root=root)
    test_path = find_file(SNEMI3D, "test-input.tif", root=root)
    raw = open_volume(folder / "train-input.tif")
    return Dataset(
        name="snemi3d",
        raw=raw,
        labels=open_volume(folder / "train-labels.tif"),
        test=open_volume(test_path) if test_path else None,
        voxel_size_nm=VOXEL_SIZE_NM,
        validation_sections=last_sections(raw.shape[0], 0.2),
        source=str(folder),
    )


SNEMI3D = DatasetInfo(
    name="snemi3d",
    folder="snemi3d",
    files=(
        DataFile("train-input.tif"),
        DataFile("train-labels.tif"),
        DataFile("test-input.tif", required=False),
    ),
    roles={"raw": "train-input.tif", "labels": "train-labels.tif", "test": "test-input.tif"},
    url=URL,
    description="SNEMI3D ssSEM mouse cortex, 100x1024x1024, 30x6x6 nm, dense labels",
    load=load_snemi3d,
)
