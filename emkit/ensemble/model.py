"""An ensemble of trained models: a small YAML file, and the weighted mean of their predictions.

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

Members may differ in architecture and field of view: :func:`predict_ensemble`
runs each with :func:`~emkit.inference.predict_volume` and its own tiling
(pooled nets in their dense form) and adds ``weight * prediction`` into one
output, in memory or out of core::

    ensemble = load_ensemble("runs/isbi_vd2d-ensemble5/ensemble.yaml")
    pred = predict_ensemble(ensemble, raw)                      # (Z, Y, X, C)
    with create_output("pred.h5:pred", (*raw.shape, 1)) as out:
        predict_ensemble(ensemble, raw, out=out)                # out of core

They must agree on the number of output channels and on being 2D or 3D.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from emkit.errors import InputError, MissingDataError, OverwriteError, yaml_problem
from emkit.io.plain import to_plain
from emkit.models.shapes import Geometry, model_geometry

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
    """The sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
    """A copy of ``ensemble`` with new weights (normalized) and metadata merged in."""
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
    if not path.is_file():
        raise MissingDataError(f"ensemble: no file at '{path}'")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"ensemble '{path}' is not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise InputError(f"ensemble '{path}': expected a mapping with 'members', got {data!r}")
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
    from emkit.io._common import atomic_path

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
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


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


def check_members(models: Sequence, names: Sequence[str] | None = None) -> Geometry:
    """Checks that models can be averaged: same kind (2D/3D), input and output channels.

    Args:
        models: built Keras models with one input and one output.
        names: how to name each in errors (default: ``member i ('<model.name>')``).

    Returns:
        The first member's :class:`~emkit.models.shapes.Geometry`; every member has its
        ``ndim``, ``in_channels`` and ``out_channels`` (windows and fields of view may
        differ).

    Raises:
        InputError: no model, or two that differ; the message names both models and
            their output shapes.
    """
    from emkit.inference.plan import _model_ndim

    if not models:
        raise InputError("models: an ensemble needs at least one model")
    if names is None:
        names = [f"member {i} ({m.name!r})" for i, m in enumerate(models)]
    first = None
    for name, model in zip(names, models):
        kind = (_model_ndim(model), int(model.inputs[0].shape[-1]),
                int(model.outputs[0].shape[-1]))
        if first is None:
            first = (name, model, kind)
            continue
        if kind != first[2]:
            a, b = first[1], model
            raise InputError(
                f"ensemble members {first[0]} and {name} cannot be averaged: {first[0]} takes "
                f"{tuple(a.inputs[0].shape)} and outputs {tuple(a.outputs[0].shape)}, {name} "
                f"takes {tuple(b.inputs[0].shape)} and outputs {tuple(b.outputs[0].shape)}; "
                "members need the same number of output (and input) channels and the same "
                "kind (2D or 3D)"
            )
    return model_geometry(first[1])


# --------------------------------------------------------------------------- prediction


def predict_ensemble(ensemble_or_models, raw, *, weights=None, out=None, progress: bool = True,
                     **predict_kwargs):
    """The weighted mean of the members' tiled predictions of a volume.

    Each member runs through :func:`~emkit.inference.predict_volume` with its own
    tiles (its own input, output and field of view; a pooled net in its dense
    form), and ``weight_k * pred_k`` is added into one output, so that nothing
    of the volume's size is held besides ``out``::

        out = sum_k  w_k * predict_volume(model_k, raw)      with  sum_k w_k = 1

    Args:
        ensemble_or_models: an :class:`Ensemble` (its members are loaded), or a
            sequence of built Keras models and/or ``.keras`` paths.
        raw: ndarray or array-like of shape ``(Z, Y, X)`` or ``(Y, X)``, as for
            :func:`~emkit.inference.predict_volume` (read once per member).
        weights: one number >= 0 per member, normalized to sum to one; default:
            the ensemble's weights, or equal weights for a list of models.
            Members of weight 0 are not run.
        out: None (a new in-memory array), an ndarray of the result's shape
            (zeroed first), or an array-like holding zeros such as a view from
            :func:`~emkit.inference.create_output` (added into, out of core).
        progress: a progress bar per member.
        **predict_kwargs: the other options of
            :func:`~emkit.inference.predict_volume` (``tile_shape``, ``overlap``,
            ``blend``, ``batch_size``, ``tta``, ``offsets``, ``normalize``,
            ``block_mib``), the same for every member; a ``tile_shape`` is rounded
            up to a size that each member takes.

    Returns:
        ``out``, or a new float32 ndarray of shape ``(Z, Y, X, C)`` (``(Y, X, C)``
        for a 2D ``raw``).

    Raises:
        InputError: members that differ in output channels or kind (the message
            names both), bad weights, or a ``raw``/``out`` that does not fit.
    """
    from emkit.inference import predict_volume

    if isinstance(ensemble_or_models, Ensemble):
        models = load_members(ensemble_or_models)
        names = [f"'{p}'" for p in ensemble_or_models.paths]
        if weights is None:
            weights = ensemble_or_models.weights
    else:
        from emkit.models.saving import load_model

        items = list(ensemble_or_models)
        models = [load_model(m, compile=False) if isinstance(m, (str, os.PathLike)) else m
                  for m in items]
        names = [f"'{m}'" if isinstance(m, (str, os.PathLike)) else f"member {i} ({m.name!r})"
                 for i, m in enumerate(items)]
    shapes = check_members(models, names)
    w = normalize_weights(weights, len(models))
    raw_shape = tuple(int(n) for n in raw.shape)
    spatial = raw_shape[:-1] if shapes.in_channels > 1 else raw_shape
    result_shape = (*spatial, shapes.out_channels)
    if out is None:
        out = np.zeros(result_shape, np.float32)
    elif tuple(out.shape) != result_shape:
        raise InputError(f"out: expected shape {result_shape}, got {tuple(out.shape)}")
    if isinstance(out, np.ndarray):
        out[...] = 0
        target = _AddInto(out)  # predict_volume zeroes an ndarray; each member adds into this
    else:
        target = out
    for model, wk in zip(models, w):
        if wk > 0:
            predict_volume(model, raw, out=target, weight=float(wk), progress=progress,
                           **predict_kwargs)
    return out


class _AddInto:
    """An ndarray seen as an array-like, so that :func:`predict_volume` adds into it."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, box):
        return self.array[box]

    def __setitem__(self, box, value):
        self.array[box] = value


__all__ = [
    "ENSEMBLE_SUFFIXES",
    "FORMAT_VERSION",
    "Ensemble",
    "Member",
    "check_members",
    "file_sha256",
    "is_ensemble_file",
    "load_ensemble",
    "load_members",
    "load_predictor",
    "make_ensemble",
    "normalize_weights",
    "predict_ensemble",
    "save_ensemble",
    "with_weights",
]
