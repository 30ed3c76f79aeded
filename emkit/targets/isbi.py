"""ISBI 2012 membrane labels (255 = cell interior, 0 = membrane) to emkit targets.

References:
    I. Arganda-Carreras et al. (2015). Crowdsourcing the creation of image segmentation
    algorithms for connectomics. Frontiers in Neuroanatomy 9:142.
"""

import numpy as np

from emkit.errors import InputError
from emkit.targets._checks import check_array
from emkit.targets.boundaries import boundaries_to_seg


def _check_isbi_labels(labels):
    if isinstance(labels, np.ndarray) and labels.dtype == bool:
        raise InputError(
            f"labels must hold 0 (membrane) and 255 (cell interior), got a bool array of "
            f"shape {labels.shape}: which value means membrane is ambiguous; convert it "
            f"to 0/255 first"
        )
    check_array(labels, "labels", ndims=(2, 3), kinds="iuf", kinds_text="an integer or float")
    odd = (labels != 0) & (labels != 255)
    if not odd.any():
        return
    unexpected = np.unique(labels[odd]).tolist()  # sort only the offending voxels
    shown = ", ".join(str(v) for v in unexpected[:10])
    more = f" and {len(unexpected) - 10} more" if len(unexpected) > 10 else ""
    hint = ""
    if unexpected == [1]:
        hint = "; 0/1 labels are ambiguous, convert them to 0 = membrane, 255 = interior"
    raise InputError(
        f"labels must hold only 0 (membrane) and 255 (cell interior), as in ISBI 2012; "
        f"got shape {labels.shape}, dtype {labels.dtype} with unexpected values "
        f"{shown}{more}{hint}"
    )


def isbi_labels_to_boundaries(labels):
    """Boundary map from ISBI 2012 labels (255 = cell interior, 0 = membrane).

    Args:
        labels: ndarray of shape (Z, Y, X) or (Y, X) holding only 0 and 255, any integer
            or float dtype. Bool and 0/1 arrays are rejected, since which of their values
            means membrane is ambiguous.

    Returns:
        ndarray of the shape of ``labels``, dtype uint8: 1 on membrane, 0 inside cells.

    Example:
        >>> isbi_labels_to_boundaries(np.array([[255, 0, 255]], np.uint8)).tolist()
        [[0, 1, 0]]
    """
    _check_isbi_labels(labels)
    return (labels == 0).view(np.uint8)


def isbi_labels_to_seg(labels):
    """Segmentation from ISBI 2012 labels: the 4-connected cell interiors of each section.

    Args:
        labels: ndarray of shape (Z, Y, X) or (Y, X) holding only 0 (membrane) and 255
            (cell interior); see :func:`isbi_labels_to_boundaries`.

    Returns:
        ndarray of the shape of ``labels``, dtype uint64: ids consecutive from 1 and
        unique across the volume (sections never share an id), 0 on membrane.

    Example:
        >>> isbi_labels_to_seg(np.array([[255, 0, 255, 255]], np.uint8)).tolist()
        [[1, 0, 2, 2]]
    """
    boundaries = isbi_labels_to_boundaries(labels)
    return boundaries_to_seg(boundaries, threshold=0.5, per_section=True, connectivity=1)
