"""Export predictions to the submission formats of the EM segmentation challenges.

* **ISBI 2012** (:func:`export_isbi2012`): a multipage TIFF of 32-bit floats in [0, 1],
  one page per section, in the challenge's convention **1 = cell interior
  (non-membrane), 0 = membrane**, the convention of its labels (255 interior, 0
  membrane); the scorer reads pixels above a threshold as interior. emkit's boundary
  maps say 1 = boundary, so they are written inverted, ``1 - boundaries``.
* **SNEMI3D** (:func:`export_snemi3d`): a multipage TIFF of ``uint32`` neuron labels,
  one page per section; 0 stays 0 (no label).
* **CREMI** (:func:`export_cremi`): an HDF5 file with ``volumes/labels/neuron_ids``
  (``uint64``), and optionally ``volumes/raw`` (``uint8``), each with the attributes
  ``resolution`` and ``offset`` in nm (z, y, x), as cremi_python writes them.

Each writer refuses to replace an existing file unless ``overwrite=True``, writes to a
temporary file first and renames it, so a failed export leaves nothing behind. TIFFs are
uncompressed, which every scorer reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emkit.errors import InputError, OverwriteError
from emkit.io._common import atomic_path

FORMATS = ("isbi2012", "snemi3d", "cremi")
#: CREMI's voxel size (nm, z, y, x), the default for :func:`export_cremi`.
CREMI_RESOLUTION_NM = (40.0, 4.0, 4.0)
CREMI_LABELS_KEY = "volumes/labels/neuron_ids"
CREMI_RAW_KEY = "volumes/raw"


def _target(path, overwrite):
    path = Path(path)
    if path.exists() and not overwrite:
        raise OverwriteError(f"'{path}' exists; pass --overwrite (overwrite=True) to replace it")
    return path


def _check_labels(seg) -> None:
    """A segmentation to export: (Z, Y, X) integer labels, none negative."""
    _check_volume(seg, "seg", "iub", "integer labels")
    if seg.dtype.kind == "i" and seg.size and seg.min() < 0:
        raise InputError(f"seg must not hold negative labels, got min {seg.min()}")


def _check_volume(arr, name, kinds, kinds_text):
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{name} must be a numpy ndarray, got {type(arr).__name__}")
    if arr.ndim != 3:
        raise InputError(f"{name} must have shape (Z, Y, X), got shape {arr.shape}")
    if arr.dtype.kind not in kinds:
        raise InputError(f"{name} must be {kinds_text}, got dtype {arr.dtype}")


def export_isbi2012(path, boundaries, *, overwrite=False):
    """Write a boundary map as an ISBI 2012 submission (float32 TIFF, 1 = interior).

    Args:
        path: the ``.tif`` file to write.
        boundaries: ndarray of shape (Z, Y, X), float in [0, 1], **1 = boundary**
            (emkit's convention); written as ``1 - boundaries``.
        overwrite: replace an existing file.

    Returns:
        The path written.

    Example:
        >>> import tempfile, tifffile
        >>> out = Path(tempfile.mkdtemp()) / "isbi.tif"
        >>> _ = export_isbi2012(out, np.array([[[0.0, 1.0]]]))
        >>> tifffile.imread(out).tolist()  # 1 = interior, 0 = membrane
        [[[1.0, 0.0]]]
    """
    _check_volume(boundaries, "boundaries", "f", "floats in [0, 1] (1 = boundary)")
    lo, hi = (float(boundaries.min()), float(boundaries.max())) if boundaries.size else (0, 0)
    if not (lo >= 0 and hi <= 1):
        raise InputError(f"boundaries must hold values in [0, 1], got {lo} to {hi}")
    interior = np.subtract(1, boundaries, dtype=np.float32)
    return _write_tiff(path, interior, overwrite)


def export_snemi3d(path, seg, *, overwrite=False):
    """Write a segmentation as a SNEMI3D submission (uint32 TIFF stack of labels).

    Ids are kept when they fit in ``uint32``; otherwise all labels are renumbered
    consecutively from 1 in increasing order of their old value. 0 stays 0.

    Args:
        path: the ``.tif`` file to write.
        seg: ndarray of shape (Z, Y, X), integer labels (not negative).
        overwrite: replace an existing file.

    Returns:
        The path written.
    """
    _check_labels(seg)
    if seg.size and int(seg.max()) > np.iinfo(np.uint32).max:
        from emkit.targets import relabel_consecutive

        seg, _ = relabel_consecutive(seg)
        if int(seg.max()) > np.iinfo(np.uint32).max:
            raise InputError(
                f"seg has {int(seg.max())} labels, more than uint32 holds; SNEMI3D needs uint32"
            )
    return _write_tiff(path, seg.astype(np.uint32, copy=False), overwrite)


def export_cremi(
    path,
    seg,
    *,
    voxel_size_nm=CREMI_RESOLUTION_NM,
    offset_nm=(0.0, 0.0, 0.0),
    raw=None,
    overwrite=False,
):
    """Write a segmentation as a CREMI submission (HDF5 ``volumes/labels/neuron_ids``).

    Args:
        path: the ``.hdf`` / ``.h5`` file to write.
        seg: ndarray of shape (Z, Y, X), integer labels (not negative); stored as uint64.
        voxel_size_nm: voxel size in nm (z, y, x), stored as ``resolution``; CREMI's is
            (40, 4, 4).
        offset_nm: position of voxel (0, 0, 0) in nm (z, y, x).
        raw: optional ndarray of shape (Z, Y, X), the EM image, stored as
            ``volumes/raw`` (uint8 as is; other dtypes are refused).
        overwrite: replace an existing file.

    Returns:
        The path written.
    """
    from emkit.io import write_volume

    _check_labels(seg)
    if raw is not None:
        _check_volume(raw, "raw", "u", "uint8 (the EM image)")
        if raw.dtype != np.uint8 or raw.shape != seg.shape:
            raise InputError(
                f"raw must be uint8 of the shape of seg {seg.shape}, got {raw.dtype} "
                f"of shape {raw.shape}"
            )
    path = _target(path, overwrite)
    if path.suffix.lower() not in (".hdf", ".h5", ".hdf5"):
        raise InputError(f"a CREMI file must end in .hdf, .h5 or .hdf5, got '{path}'")
    attrs = {"voxel_size_nm": voxel_size_nm, "offset_nm": offset_nm}
    # Both datasets go into a temporary file beside the target, renamed onto it once
    # complete (a rerun removes what a killed export left).
    with atomic_path(path) as tmp:
        write_volume(f"{tmp}:{CREMI_LABELS_KEY}", seg.astype(np.uint64, copy=False), **attrs)
        if raw is not None:
            write_volume(f"{tmp}:{CREMI_RAW_KEY}", raw, **attrs)
    return path


def _write_tiff(path, array, overwrite):
    """An uncompressed multipage TIFF, written atomically by :func:`emkit.io.write_volume`."""
    from emkit.io import write_volume

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"a TIFF submission must end in .tif or .tiff, got '{path}'")
    write_volume(path, array, overwrite=overwrite, compression=None)
    return path
