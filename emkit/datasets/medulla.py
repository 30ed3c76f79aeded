"""FlyEM *Drosophila* medulla FIB-SEM with dense neuron labels, 10 nm isotropic.

The file ``neuroproof_medulla.h5`` (CREMI layout) holds z 0-187 of a 250^3 cube; put it in
``<data root>/neuroproof_medulla/`` or pass its path. License: CC BY 3.0, HHMI Janelia FlyEM
(``janelia-flyem/neuroproof_examples``).

Reference:
    Parag et al. (2015), A context-aware delayed agglomeration framework for electron
    microscopy segmentation. PLoS ONE 10(5): e0125825.
"""

from __future__ import annotations

from emkit.datasets.base import Dataset
from emkit.datasets.cremi import LABELS_KEY, RAW_KEY, load_cremi_file
from emkit.datasets.files import DataFile, DatasetInfo, require_files

FILE_NAME = "neuroproof_medulla.h5"


def load_medulla(*, root=None, path=None) -> Dataset:
    """Loads the medulla volume; the last 20% of sections (38 of 188) validate.

    Args:
        root: data root holding ``neuroproof_medulla/neuroproof_medulla.h5``.
        path: the file itself, instead.

    Returns:
        A :class:`~emkit.datasets.base.Dataset` with ``raw`` uint8 and ``labels`` uint64 of
        shape (188, 250, 250) and voxel size (10, 10, 10) nm.
    """
    if path is None:
        path = require_files(MEDULLA, root=root) / FILE_NAME
    return load_cremi_file(path, name="medulla")


MEDULLA = DatasetInfo(
    name="medulla",
    folder="neuroproof_medulla",
    files=(
        DataFile(
            FILE_NAME,
            ("f8ad9c721610e5af748f842873e3a3f2680f69809bb9b953566e6f67657352cf",),
        ),
    ),
    roles={"raw": f"{FILE_NAME}:{RAW_KEY}", "labels": f"{FILE_NAME}:{LABELS_KEY}"},
    url="https://github.com/janelia-flyem/neuroproof_examples (training_sample2)",
    description="FlyEM medulla FIB-SEM 188x250x250, 10 nm isotropic, dense labels",
    load=load_medulla,
)
