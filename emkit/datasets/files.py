"""Where data sets live on disk, and checking that their files are whole.

Data sets are never downloaded by emkit. Each one has a folder under the *data root*,
chosen in this order:

1. the ``root`` argument (``--root`` on the command line);
2. the environment variable ``EMKIT_DATA``;
3. the user cache: ``$XDG_CACHE_HOME/emkit/data``, or ``~/.cache/emkit/data``.

A data set whose files are missing raises :class:`~emkit.errors.MissingDataError` naming
every file, the folder to put it in, and the official download page.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from emkit.errors import InputError, MissingDataError

ENV_VAR = "EMKIT_DATA"


@dataclass(frozen=True)
class DataFile:
    """A file that a data set needs.

    Attributes:
        name: file name inside the data set's folder.
        sha256: digests of the known good copies (empty: none known).
        strict: a digest that matches none of ``sha256`` means a damaged file. False where
            other genuine versions exist whose digest is unknown (e.g. the official 30-section
            ISBI files, when ``sha256`` holds emkit's 25-section copy): such a file is only
            reported as unverified. Files shipped inside emkit are always checked strictly.
        required: whether the data set is incomplete without it.
    """

    name: str
    sha256: tuple[str, ...] = ()
    strict: bool = True
    required: bool = True


@dataclass(frozen=True)
class DatasetInfo:
    """How a data set is stored, where to get it, and how to load it.

    Attributes:
        name: registry name, e.g. ``"isbi2012"``.
        folder: folder under the data root, e.g. ``"isbi2012"``.
        files: the files, required and optional.
        roles: role -> spec inside the folder, e.g. ``{"raw": "train-volume.tif"}`` or
            ``{"raw": "sample_A_20160501.hdf:volumes/raw"}``.
        url: the official download page.
        description: one line for ``emkit data list``.
        load: the loader, called as ``load(root=root, **options)``.
        package_folder: a folder inside emkit that ships the required files, or None.
    """

    name: str
    folder: str | None
    files: tuple[DataFile, ...]
    roles: Mapping[str, str]
    url: str
    description: str
    load: Callable = field(repr=False)
    package_folder: Path | None = None


@dataclass(frozen=True)
class FileStatus:
    """The state of one data file: ``status`` is ``"ok"``, ``"missing"``, ``"mismatch"``,
    ``"damaged"`` or ``"unverified"``; ``detail`` says why."""

    file: DataFile
    path: Path
    status: str
    detail: str = ""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Returns the data root: ``root``, else ``$EMKIT_DATA``, else the user cache folder.

    Args:
        root: an explicit folder (wins over everything).

    Returns:
        The folder (it need not exist).
    """
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "emkit" / "data"


def root_origin(root: str | os.PathLike | None = None) -> str:
    """Says where :func:`data_root` took the folder from, for messages."""
    if root is not None:
        return "given as root / --root"
    if os.environ.get(ENV_VAR):
        return f"from ${ENV_VAR}"
    return f"the default cache folder; set ${ENV_VAR} or pass --root to use another"


def sha256sum(path: str | os.PathLike, *, chunk_bytes: int = 1 << 20) -> str:
    """The sha256 hex digest of a file, read in chunks.

    Args:
        path: the file.
        chunk_bytes: bytes read at a time.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_folder(info: DatasetInfo, *, root=None) -> Path:
    """The folder that holds a data set's required files.

    The data root's folder is used when it holds all required files, else the copy
    shipped with emkit (if any); when neither is complete, the data root's folder.

    Args:
        info: the data set.
        root: data root (see :func:`data_root`).
    """
    folder = data_root(root) / (info.folder or info.name)
    required = [f.name for f in info.files if f.required]
    if all((folder / name).is_file() for name in required):
        return folder
    shipped = info.package_folder
    if shipped is not None and all((shipped / name).is_file() for name in required):
        return shipped
    return folder


def find_file(info: DatasetInfo, name: str, *, root=None) -> Path | None:
    """Finds one file of a data set: in its chosen folder, else in the data root's.

    Args:
        info: the data set.
        name: the file's name.
        root: data root (see :func:`data_root`).

    Returns:
        The file's path, or None when neither folder holds it.
    """
    for folder in (dataset_folder(info, root=root), data_root(root) / (info.folder or info.name)):
        if (folder / name).is_file():
            return folder / name
    return None


def require_files(info: DatasetInfo, *, root=None, names=None) -> Path:
    """Checks that files of a data set exist and returns their folder.

    Args:
        info: the data set.
        root: data root (see :func:`data_root`).
        names: the files to require (default: all required files).

    Returns:
        The folder that holds them.

    Raises:
        MissingDataError: naming every missing file, the folder and the download page.
    """
    names = [f.name for f in info.files if f.required] if names is None else list(names)
    folder = dataset_folder(info, root=root)
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise MissingDataError(missing_message(info, missing, root=root))
    return folder


def missing_message(info: DatasetInfo, missing, *, root=None) -> str:
    """The "put these files there" message for missing files, on one line.

    Args:
        info: the data set.
        missing: the names of the missing files.
        root: data root (see :func:`data_root`).
    """
    folder = data_root(root) / (info.folder or info.name)
    optional = [f.name for f in info.files if not f.required and f.name not in missing]
    where = ", ".join(str(folder / name) for name in missing)
    text = (f"data set '{info.name}' is missing {len(missing)} file(s): put {where} there "
            f"(data root {data_root(root)}: {root_origin(root)}), downloaded from {info.url}")
    if optional:
        text += f"; optional: {', '.join(optional)}"
    return text + "; emkit never downloads data itself"


def check_file(info: DatasetInfo, file: DataFile, path: Path) -> FileStatus:
    """Checks one file: exists, checksum, and (when unverified) that it opens.

    Args:
        info: the data set the file belongs to.
        file: the file's :class:`DataFile` entry.
        path: where the file is (or should be).

    Returns:
        A :class:`FileStatus`.
    """
    if not path.is_file():
        return FileStatus(file, path, "missing", "required" if file.required else "optional")
    if not file.sha256:
        return _opens(info, file, path, "no reference checksum")
    digest = sha256sum(path)
    if digest in file.sha256:
        return FileStatus(file, path, "ok", "sha256 matches")
    shipped = info.package_folder is not None and path.parent == info.package_folder
    if file.strict or shipped:
        return FileStatus(
            file, path, "mismatch",
            f"sha256 {digest}, expected {' or '.join(file.sha256)}",
        )
    return _opens(info, file, path, "not emkit's copy; no reference checksum for others")


def _opens(info: DatasetInfo, file: DataFile, path: Path, detail: str) -> FileStatus:
    from emkit.io import open_volume

    specs = [s for s in info.roles.values() if s.partition(":")[0] == file.name] or [file.name]
    try:
        for spec in specs:
            open_volume(str(path.parent / spec))
    except (InputError, MissingDataError) as exc:
        return FileStatus(file, path, "damaged", str(exc))
    return FileStatus(file, path, "unverified", detail)


def check_files(info: DatasetInfo, *, root=None) -> list[FileStatus]:
    """Checks every file of a data set (see :func:`check_file`).

    Args:
        info: the data set.
        root: data root (see :func:`data_root`).

    Returns:
        One :class:`FileStatus` per file of ``info.files``, in order.
    """
    statuses = []
    for file in info.files:
        path = find_file(info, file.name, root=root)
        if path is None:
            path = dataset_folder(info, root=root) / file.name
        statuses.append(check_file(info, file, path))
    return statuses


def verify_files(info: DatasetInfo, *, root=None) -> list[FileStatus]:
    """Checks a data set's files and raises on the first problem.

    Args:
        info: the data set.
        root: data root (see :func:`data_root`).

    Returns:
        The statuses, when every required file is present and none is damaged.

    Raises:
        MissingDataError: required files are missing (the message says where to put them).
        InputError: a file does not match its checksum or cannot be read.
    """
    statuses = check_files(info, root=root)
    missing = [s.file.name for s in statuses if s.status == "missing" and s.file.required]
    if missing:
        raise MissingDataError(missing_message(info, missing, root=root))
    for s in statuses:
        if s.status in ("mismatch", "damaged"):
            raise InputError(
                f"'{s.path}' of data set '{info.name}' is damaged or a different version "
                f"({s.detail}); download it again from {info.url}"
            )
    return statuses


def role_spec(info: DatasetInfo, role: str, *, root=None) -> str:
    """The volume spec of one role (``"raw"``, ``"labels"``, ``"test"``) of a data set.

    Args:
        info: the data set.
        role: the role's name, a key of ``info.roles``.
        root: data root (see :func:`data_root`).

    Returns:
        ``"path"`` or ``"path:key"``, for :func:`~emkit.io.open_volume`.

    Raises:
        InputError: the data set has no such role.
        MissingDataError: its file is missing.
    """
    if role not in info.roles:
        raise InputError(
            f"data set '{info.name}' has no '{role}'; expected one of {sorted(info.roles)}"
        )
    name, _, key = info.roles[role].partition(":")
    path = find_file(info, name, root=root)
    if path is None:
        raise MissingDataError(missing_message(info, [name], root=root))
    return f"{path}:{key}" if key else str(path)
