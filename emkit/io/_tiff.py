"""Multipage TIFF stacks, one page per section, through tifffile.

Reads are lazy by page: a crop reads whole pages, only those of the sections it covers
(through tifffile's Zarr view of the file); reading everything uses one plain read. The file
is reopened for each read. The voxel size is stored by :func:`write` as JSON in the first
page's ImageDescription (tifffile "shaped" metadata: ``{"shape": ..., "voxel_size_nm": ...}``)
and read back from there; files without it have no voxel size.

A truncated or damaged file is detected by :func:`probe` (that is, by ``open_volume``): tifffile's warnings, a shape
that disagrees with the stored one, or page data past the end of the file raise InputError.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from emkit.errors import InputError
from emkit.io._common import atomic_path, check_compression, nm_tuple, require_file

COMPRESSIONS = {"gzip": "zlib", None: None}


class _Collect(logging.Handler):
    """Collects the warnings that tifffile logs in this thread (it logs damage, not raises)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record):
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


@contextmanager
def _open(path: Path, *, check: bool = True):
    """Opens a TIFF, checks that it is whole (unless ``check`` is False), yields
    ``(tif, series)``."""
    import tifffile

    require_file(path, what="TIFF file")
    collect = _Collect()
    logger = logging.getLogger("tifffile")
    logger.addHandler(collect)
    try:
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:
            raise InputError(f"'{path}' is not a readable TIFF file: {exc}") from exc
        with tif:
            try:
                series = tif.series[0]
                if check:
                    _check_whole(tif, series, path)
            except InputError:
                raise
            except Exception as exc:
                raise InputError(f"'{path}' is a damaged TIFF file: {exc}") from exc
            if collect.messages and check:
                raise InputError(
                    f"'{path}' is a damaged or truncated TIFF file: {collect.messages[0]}"
                )
            logger.removeHandler(collect)
            yield tif, series
    finally:
        logger.removeHandler(collect)


def _check_whole(tif, series, path: Path) -> None:
    size = path.stat().st_size
    stored = (tif.shaped_metadata or [{}])[0].get("shape")
    if stored is not None and tuple(stored) != tuple(series.shape):
        raise InputError(
            f"'{path}' is a damaged or truncated TIFF file: it declares shape {tuple(stored)} "
            f"but holds {tuple(series.shape)}"
        )
    if series.dataoffset is not None:
        end = series.dataoffset + series.nbytes
    else:
        end = max(
            (o + c for page in series.pages if page is not None
             for o, c in zip(page.dataoffsets, page.databytecounts)),
            default=0,
        )
    if end > size:
        raise InputError(
            f"'{path}' is a truncated TIFF file: its image data needs {end} bytes, "
            f"the file has {size}"
        )


def probe(path: Path, key: str | None) -> dict:
    """Reads shape, dtype and voxel size of the first series without reading pixels.

    Arguments: the back-end contract at :data:`emkit.io.volume.BACKENDS`.
    """
    with _open(path) as (tif, series):
        meta = (tif.shaped_metadata or [{}])[0]
        where = f"'{path}'"
        return {
            "key": None,
            "shape": tuple(series.shape),
            "dtype": np.dtype(series.dtype),
            "voxel_size_nm": nm_tuple(meta.get("voxel_size_nm"), name="voxel_size_nm",
                                      where=where),
            "offset_nm": nm_tuple(meta.get("offset_nm"), name="offset_nm", where=where),
        }


def attributes(path: Path, key: str | None) -> dict:
    """The JSON metadata of the first page (``{"shape": ..., "voxel_size_nm": ...}``).

    Arguments: the back-end contract at :data:`emkit.io.volume.BACKENDS`.
    """
    with _open(path) as (tif, _series):
        return dict((tif.shaped_metadata or [{}])[0])


def read(path: Path, key: str | None, box: tuple[slice, ...]) -> np.ndarray:
    """Reads the box; whole pages are decoded, only those the box covers.

    A whole volume is read with tifffile alone; a part goes through tifffile's Zarr
    store (imported here only, so that reading whole stacks needs no Zarr).

    Arguments: the back-end contract at :data:`emkit.io.volume.BACKENDS`.
    """
    with _open(path, check=False) as (_tif, series):
        try:
            if all(s.start == 0 and s.stop == n for s, n in zip(box, series.shape)):
                return np.asarray(series.asarray())
            import zarr

            with series.aszarr() as store:
                return np.asarray(zarr.open_array(store, mode="r")[box])
        except Exception as exc:
            raise InputError(f"cannot read the TIFF file '{path}' (damaged?): {exc}") from exc


def write(path, key, array, *, voxel_size_nm, offset_nm, overwrite, chunks, compression):
    """Writes a multipage TIFF atomically; see :func:`emkit.io.write_volume`.

    ``compression="gzip"`` stores deflate (zlib) pages, which tifffile, Fiji, Pillow and
    scikit-image read; ``None`` stores plain pages. ``chunks`` does not apply.

    Arguments: the back-end contract at :data:`emkit.io.volume.BACKENDS`.
    """
    import tifffile

    check_compression(compression, COMPRESSIONS, fmt="TIFF", path=path)
    metadata = {}
    if voxel_size_nm is not None:
        metadata["voxel_size_nm"] = list(voxel_size_nm)
    if offset_nm is not None:
        metadata["offset_nm"] = list(offset_nm)
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            array,
            photometric="minisblack",
            compression=COMPRESSIONS[compression],
            metadata=metadata,
        )
