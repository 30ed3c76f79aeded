"""PNG images: a folder of sections (``folder/``) or one 2D image (``image.png``).

A folder is read as a stack of its ``*.png`` files sorted naturally by the numbers in their
names (``2.png`` before ``10.png``), one section each; only the sections a crop covers are
decoded. PNG carries no voxel size. Writing stores 8- or 16-bit grayscale images named
``0000.png``, ``0001.png``, ...
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from emkit.errors import InputError, MissingDataError
from emkit.io._common import atomic_path, require_file

DTYPES = (np.dtype(bool), np.dtype(np.uint8), np.dtype(np.uint16))


def natural_key(name: str) -> list:
    """Sort key that orders the numbers in a name by value: ``2.png`` < ``10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def section_files(path: Path) -> list[Path]:
    """Lists the PNG files of a folder in natural order (or the one file)."""
    require_file(path, what="PNG folder" if path.suffix.lower() != ".png" else "PNG file")
    if path.is_file():
        return [path]
    files = sorted(
        (p for p in path.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")),
        key=lambda p: natural_key(p.name),
    )
    if not files:
        raise MissingDataError(f"the folder '{path}' holds no .png files")
    return files


def _image(file: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(file) as image:
            return np.asarray(image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"'{file}' is not a readable PNG image: {exc}") from exc


def probe(path: Path, key: str | None) -> dict:
    """Shape and dtype from the first section's header (one PNG per section, or one image).

    Arguments: the back-end contract at :data:`emkit.io.volume.BACKENDS`.
    """
    from PIL import Image

    files = section_files(path)
    first = _image(files[0])
    with Image.open(files[0]) as image:
        first_mode = image.mode
    for file in files[1:]:
        try:
            with Image.open(file) as image:
                size, mode = image.size, image.mode
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputError(f"'{file}' is not a readable PNG image: {exc}") from exc
        if size[::-1] != first.shape[:2] or mode != first_mode:
            raise InputError(
                f"the PNG sections in '{path}' differ: '{files[0].name}' is "
                f"{first.shape[:2]} (y, x) mode {first_mode}, '{file.name}' is "
                f"{size[::-1]} mode {mode}"
            )
    shape = first.shape if path.is_file() else (len(files), *first.shape)
    return {"key": None, "shape": shape, "dtype": first.dtype,
            "voxel_size_nm": None, "offset_nm": None}


def read(path: Path, key: str | None, box: tuple[slice, ...]) -> np.ndarray:
    """The box, decoding only the sections it covers.

    Arguments: the back-end contract at :data:`emkit.io.volume.BACKENDS`.
    """
    files = section_files(path)
    if path.is_file():
        return np.array(_image(path)[box])
    return np.stack([_image(file)[box[1:]] for file in files[box[0]]])


def write(path, key, array, *, voxel_size_nm, offset_nm, overwrite, chunks, compression):
    """Writes PNG sections atomically (lossless; ``compression`` and ``chunks`` do not apply).

    Arguments: the back-end contract at :data:`emkit.io.volume.BACKENDS`.
    """
    from PIL import Image

    if array.dtype not in DTYPES:
        raise InputError(
            f"PNG stores 8- or 16-bit integer images; cannot write dtype {array.dtype} to "
            f"'{path}'; use .tif, .h5 or .zarr, or convert the array first"
        )
    single = path.suffix.lower() == ".png"
    if array.ndim != (2 if single else 3):
        raise InputError(
            f"expected a {'2D (y, x) image' if single else '3D (z, y, x) volume'} to write to "
            f"'{path}', got shape {array.shape}"
        )
    with atomic_path(path) as tmp:
        if single:
            Image.fromarray(array).save(tmp, format="PNG")
            return
        tmp.mkdir()
        width = max(4, len(str(len(array) - 1)))
        for z, section in enumerate(array):
            Image.fromarray(section).save(tmp / f"{z:0{width}d}.png", format="PNG")
