"""The weighted mean of an ensemble's member predictions (thesis 2.8, EnsembleLearner).

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

import os
from collections.abc import Sequence

import numpy as np

from emkit.ensemble.file import Ensemble, load_members, normalize_weights
from emkit.errors import InputError
from emkit.models.shapes import Geometry, model_geometry


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
    from emkit.inference.tiled import output_array

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
    out = output_array(out, (*spatial, shapes.out_channels))
    if isinstance(out, np.ndarray):
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


__all__ = ["check_members", "predict_ensemble"]
