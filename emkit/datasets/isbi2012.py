"""ISBI 2012 EM segmentation challenge: serial-section TEM of the *Drosophila* larval VNC.

emkit ships the first 25 of the 30 training sections with their labels
(``emkit/datasets/data/isbi2012/``); sections 25-29 are withheld for evaluation. The full
set (``train-volume.tif``, ``train-labels.tif``, ``test-volume.tif``) is used instead when it
is in ``<data root>/isbi2012/``. Labels: 255 = cell interior, 0 = membrane.

References:
    Cardona et al. (2010), PLoS Biology 8(10): e1000502.
    Arganda-Carreras et al. (2015), Frontiers in Neuroanatomy 9:142.
"""

from __future__ import annotations

from pathlib import Path

from emkit.datasets.base import Dataset
from emkit.datasets.files import DataFile, DatasetInfo
from emkit.datasets.volume import load_challenge

VOXEL_SIZE_NM = (50.0, 4.0, 4.0)
PACKAGE_FOLDER = Path(__file__).resolve().parent / "data" / "isbi2012"
URL = (
    "https://imagej.net/events/isbi-2012-segmentation-challenge"
    " (formerly brainiac2.mit.edu/isbi_challenge)"
)


def load_isbi2012(*, root=None) -> Dataset:
    """Loads ISBI 2012: the data root's full set if present, else the 25 shipped sections.

    Args:
        root: data root (see :func:`emkit.datasets.files.data_root`).

    Returns:
        A :class:`~emkit.datasets.base.Dataset` with ``raw`` and ``labels`` of shape
        (25, 512, 512) uint8 (30 for the full set), ``label_kind="isbi"``, voxel size
        (50, 4, 4) nm, the test volume when present, and the last 5 sections for validation.
    """
    return load_challenge(ISBI2012, root=root, raw="train-volume.tif",
                          labels="train-labels.tif", test="test-volume.tif",
                          voxel_size_nm=VOXEL_SIZE_NM, label_kind="isbi",
                          unlabelled_value=None)


ISBI2012 = DatasetInfo(
    name="isbi2012",
    folder="isbi2012",
    files=(
        DataFile(
            "train-volume.tif",
            ("ffd3f1d01cfe6c11c95a9a68238e20d91d393906710a66d52de75405aaf501ca",),
            strict=False,
        ),
        DataFile(
            "train-labels.tif",
            ("d138833cf64469836cedd80425a0194d61c5b397c53e93e7bda1135097d05fbc",),
            strict=False,
        ),
        DataFile(
            "test-volume.tif",
            ("046fbb869a953f1ffa63a9722849fe0aa693ad7a21aa9278a2bff2397d00b16f",),
            strict=False,
            required=False,
        ),
    ),
    roles={"raw": "train-volume.tif", "labels": "train-labels.tif", "test": "test-volume.tif"},
    url=URL,
    description="ISBI 2012 ssTEM, 512x512 sections, 50x4x4 nm, membrane labels",
    load=load_isbi2012,
    package_folder=PACKAGE_FOLDER,
)
