"""The ensemble file: a small YAML list of member models with weights and checksums.

Thesis 2.8 (EnsembleLearner): several nets trained alike, from different seeds,
predict better together than each alone (Table 3.1: five VD2D nets gave the best
Rand score). An ensemble file names its members beside it::

    # ensemble.yaml
    version: 1
    members:
    - {path: member-0/model.keras, weight: 0.5, sha256: 3f2a...}
    - {path: member-1/model.keras, weight: 0.5, sha256: 91c0...}
    metadata: {recipe: isbi_vd2d, weights: {method: uniform}}

Paths are relative to the file's folder, so a folder of members and its
ensemble move together. Weights are normalized to sum to one. The sha256 of
each member is checked on loading: a member retrained or replaced since the
ensemble was made is an error, never a silent change of the prediction.

:func:`load_predictor` reads a model or an ensemble file, whichever a path names;
:mod:`~emkit.ensemble.model` averages the members' predictions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from emkit.errors import InputError, MissingDataError, OverwriteError
from emkit.io.plain import to_plain
from emkit.io.text import read_yaml_mapping, write_text

#: The version of the ensemble file format written by :func:`save_ensemble`.
FORMAT_VERSION = 1
#: File suffixes of ensemble files (anything else is read as a ``.keras`` model).
ENSEMBLE_SUFFIXES = (".yaml", ".yml")
_HEADER = (
    "# An emkit ensemble: the weighted mean of its members' predictions.\n"
    "#   emkit predict --model {name} --input VOL --output OUT\n"
    "# Member paths are relative to this file; sha256 detects a changed member.\n"
)


@dataclass(frozen=True)
class Member:
    """One member of an ensemble.

    Attributes:
        path: the ``.keras`` file (absolute once loaded).
        weight: its weight; the members' weights sum to one.
        sha256: the hex digest of the file when the ensemble was made.
    """

    path: Path
    weight: float
    sha256: str


@dataclass(frozen=True)
class Ensemble:
    """Models whose predictions are averaged with weights.

    Attributes:
        members: the members, weights summing to one.
        metadata: free information (recipe, how the weights were found).
        source: the file it was loaded from, or None.
    """

    members: tuple[Member, ...]
    metadata: dict = field(default_factory=dict)
    source: Path | None = None

    @property
    def paths(self) -> list[Path]:
        """The members' ``.keras`` files."""
        return [m.path for m in self.members]

    @property
    def weights(self) -> np.ndarray:
        """The members' weights, float64 ndarray of shape (K,), summing to one."""
        return np.array([m.weight for m in self.members], dtype=np.float64)


# --------------------------------------------------------------------------- making, files


def file_sha256(path) -> str:
    """The sha256 hex digest of a file (:func:`emkit.datasets.files.sha256sum`)."""
    from emkit.datasets.files import sha256sum

    return sha256sum(path)


def normalize_weights(weights, count: int) -> np.ndarray:
    """Weights scaled to sum to one.

    Args:
        weights: ``count`` finite numbers >= 0, not all 0; None for equal weights.
        count: the number of members.

    Returns:
        float64 ndarray of shape (count,).

    Raises:
        InputError: a wrong count, a negative or non-finite weight, or all zero.

    >>> normalize_weights([1, 3], 2).tolist()
    [0.25, 0.75]
    """
    if weights is None:
        return np.full(count, 1.0 / count)
    try:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"weights: expected {count} numbers, got {weights!r}") from None
    if w.size != count:
        raise InputError(f"weights: expected one per member ({count}), got {w.size}: {w.tolist()}")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise InputError(f"weights: expected finite numbers >= 0, not all 0; got {w.tolist()}")
    return w / w.sum()


def make_ensemble(models, *, weights=None, metadata=None) -> Ensemble:
    """An ensemble of ``.keras`` files, their sha256 computed now.

    Args:
        models: paths of ``.keras`` files.
        weights: one number >= 0 per model (normalized), or None for equal weights.
        metadata: a mapping stored in the file (recipe, how weights were fitted).

    Raises:
        InputError: no model, a path that is not a ``.keras`` file, or bad weights.
        MissingDataError: a model file does not exist.
    """
    paths = [Path(p) for p in models]
    if not paths:
        raise InputError("models: an ensemble needs at least one .keras model")
    for path in paths:
        if path.suffix != ".keras":
            raise InputError(f"models: expected .keras files, got '{path}'")
        if not path.is_file():
            raise MissingDataError(f"models: no model file at '{path}'")
    w = normalize_weights(weights, len(paths))
    members = tuple(
        Member(p.resolve(), float(wk), file_sha256(p)) for p, wk in zip(paths, w)
    )
    return Ensemble(members, dict(metadata or {}))


def with_weights(ensemble: Ensemble, weights, *, metadata=None) -> Ensemble:
    """A copy of ``ensemble`` with new weights (normalized) and metadata merged in.

    Args:
        ensemble: the :class:`Ensemble` to copy (members, metadata and source kept).
        weights: one number >= 0 per member, normalized to sum 1.
        metadata: a mapping merged over the ensemble's metadata, or None.
    """
    w = normalize_weights(weights, len(ensemble.members))
    members = tuple(Member(m.path, float(wk), m.sha256) for m, wk in zip(ensemble.members, w))
    return Ensemble(members, {**ensemble.metadata, **(metadata or {})}, ensemble.source)


def is_ensemble_file(path) -> bool:
    """Whether ``path`` names an ensemble file (``.yaml`` / ``.yml``) rather than a model."""
    return Path(path).suffix.lower() in ENSEMBLE_SUFFIXES


def load_ensemble(path, *, verify: bool = True) -> Ensemble:
    """Reads an ensemble file and checks its members.

    Args:
        path: the ``ensemble.yaml`` file.
        verify: check each member's sha256 (reads every member file once).

    Returns:
        The :class:`Ensemble`, member paths absolute, weights normalized.

    Raises:
        MissingDataError: the file or a member file does not exist.
        InputError: the file is not an ensemble (bad YAML, unknown or missing
            keys, bad weights), or a member changed since the ensemble was made.
    """
    path = Path(path)
    data = read_yaml_mapping(path, what="ensemble", expected="a mapping with 'members'")
    unknown = sorted(set(data) - {"version", "members", "metadata"})
    if unknown:
        raise InputError(
            f"ensemble '{path}': unknown key(s) {', '.join(map(str, unknown))}; allowed: "
            "version, members, metadata"
        )
    if data.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        raise InputError(
            f"ensemble '{path}': version {data.get('version')!r}; this emkit reads version "
            f"{FORMAT_VERSION}"
        )
    entries = data.get("members")
    if not isinstance(entries, list) or not entries:
        raise InputError(f"ensemble '{path}': 'members' must be a non-empty list, got {entries!r}")
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InputError(f"ensemble '{path}': 'metadata' must be a mapping, got {metadata!r}")
    folder = path.resolve().parent
    paths, raw_weights, digests = [], [], []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"path", "weight", "sha256"}:
            raise InputError(
                f"ensemble '{path}': member {i} must have exactly the keys path, weight and "
                f"sha256, got {entry!r}"
            )
        paths.append(folder / str(entry["path"]))
        raw_weights.append(entry["weight"])
        digests.append(str(entry["sha256"]))
    try:
        weights = normalize_weights(raw_weights, len(entries))
    except InputError as exc:
        raise InputError(f"ensemble '{path}': {exc}") from None
    for i, (member, digest) in enumerate(zip(paths, digests)):
        if not member.is_file():
            raise MissingDataError(
                f"ensemble '{path}': member {i} '{entries[i]['path']}' not found at '{member}'"
            )
        if verify:
            actual = file_sha256(member)
            if actual != digest:
                raise InputError(
                    f"ensemble '{path}': member {i} '{member}' changed since the ensemble was "
                    f"made (sha256 {actual[:12]}..., expected {digest[:12]}...); restore it, "
                    "or make the ensemble again (emkit ensemble create)"
                )
    members = tuple(Member(p, float(w), d) for p, w, d in zip(paths, weights, digests))
    return Ensemble(members, metadata, path.resolve())


def save_ensemble(ensemble: Ensemble, path, *, overwrite: bool = False) -> Path:
    """Writes ``ensemble`` as YAML atomically, member paths relative to the file.

    Args:
        ensemble: the ensemble.
        path: the ``.yaml`` file to write.
        overwrite: replace an existing file.

    Returns:
        The path written.

    Raises:
        InputError: ``path`` does not end in ``.yaml`` or ``.yml``.
        OverwriteError: the file exists and ``overwrite`` is False.
    """
    path = Path(path)
    if not is_ensemble_file(path):
        raise InputError(f"ensemble: expected a .yaml file to write, got '{path}'")
    if path.exists() and not overwrite:
        raise OverwriteError(f"'{path}' exists; pass --overwrite (overwrite=True) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.resolve().parent
    data = {
        "version": FORMAT_VERSION,
        "members": [
            {"path": Path(os.path.relpath(Path(m.path).resolve(), folder)).as_posix(),
             "weight": float(m.weight), "sha256": m.sha256}
            for m in ensemble.members
        ],
        "metadata": to_plain(dict(ensemble.metadata)),
    }
    text = _HEADER.format(name=path.name) + yaml.safe_dump(data, sort_keys=False)
    return write_text(path, text)


# --------------------------------------------------------------------------- loading, checking


def load_members(ensemble: Ensemble) -> list:
    """The members' Keras models (without their optimizers), in order."""
    from emkit.models.saving import load_model

    return [load_model(p, compile=False) for p in ensemble.paths]


def load_predictor(path):
    """A ``.keras`` file as a Keras model, or an ensemble file as an :class:`Ensemble`.

    Raises:
        InputError: neither a ``.keras`` file nor an ensemble file, or not readable
            as one.
        MissingDataError: the file does not exist.
    """
    from emkit.models.saving import load_model

    if is_ensemble_file(path):
        return load_ensemble(path)
    if Path(path).suffix != ".keras":
        raise InputError(
            f"model: expected a .keras model or an ensemble .yaml file, got '{path}'"
        )
    return load_model(path, compile=False)


__all__ = ["ENSEMBLE_SUFFIXES", "FORMAT_VERSION", "Ensemble", "Member", "file_sha256",
           "is_ensemble_file", "load_ensemble", "load_members", "load_predictor",
           "make_ensemble", "normalize_weights", "save_ensemble", "with_weights"]
