"""SNEMI3D: serial-section SEM of mouse cortex, dense neuron labels (not shipped).

Put ``train-input.tif``, ``train-labels.tif`` (and optionally ``test-input.tif``), each
100 x 1024 x 1024, in ``<data root>/snemi3d/``.

Reference:
    Kasthuri et al. (2015), Saturated reconstruction of a volume of neocortex. Cell 162(3).
"""

from __future__ import annotations

from emkit.datasets.base import Dataset
from emkit.datasets.files import DataFile, DatasetInfo
from emkit.datasets.volume import load_challenge

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
        InputError: the images and labels differ in shape.
    """
    return load_challenge(SNEMI3D, root=root, raw="train-input.tif",
                          labels="train-labels.tif", test="test-input.tif",
                          voxel_size_nm=VOXEL_SIZE_NM)


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
