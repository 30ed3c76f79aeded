"""Member weights fitted on validation data: the simplex weights of least cross-entropy.

With ``P_k`` the prediction of member ``k`` and ``t`` the target (boundaries or
affinities, computed from the labels as the training sampler does), the weights
minimize the binary cross-entropy of the weighted mean over the known voxels
``V`` (unlabelled voxels, and edges that touch them, are left out)::

    p(w) = sum_k w_k P_k,        w_k >= 0,  sum_k w_k = 1
    L(w) = -1/|V| sum_{v in V} [ t_v log p_v + (1 - t_v) log(1 - p_v) ]

``L`` is convex in ``w`` (minus the log of an affine function is convex), so the
minimum over the simplex is a global one. It is found by SLSQP (scipy) with the
analytic gradient, bounds ``0 <= w_k <= 1`` and the constraint ``sum w = 1``,
starting from equal weights: no randomness, the same weights on every run.
``p`` is clipped to ``[eps, 1 - eps]`` so that a member that is sure and wrong
costs ``-log(eps)``, not infinity.

>>> t = np.array([0.0, 1.0, 1.0, 0.0])
>>> fit = fit_weights([t * 0.9 + 0.05, np.full(4, 0.5)], t)
>>> fit.weights.round(3).tolist()
[1.0, 0.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emkit.errors import InputError

#: Largest number of known voxels used in a fit; more are subsampled evenly.
MAX_VOXELS = 2_000_000


@dataclass
class WeightFit:
    """Weights fitted by :func:`fit_weights`.

    Attributes:
        weights: float64 ndarray of shape (K,), >= 0, summing to one.
        loss: the cross-entropy of the weighted mean with these weights.
        uniform_loss: the cross-entropy with equal weights.
        member_losses: float64 ndarray of shape (K,), the cross-entropy of each member alone.
        voxels: the number of known voxels (x channels) the fit used.
    """

    weights: np.ndarray
    loss: float
    uniform_loss: float
    member_losses: np.ndarray
    voxels: int

    def metadata(self, **extra) -> dict:
        """A plain mapping for an ensemble file's ``metadata.weights``."""
        return {
            "method": "fitted",
            "objective": "binary cross-entropy of the weighted mean on known voxels (SLSQP)",
            "loss": round(float(self.loss), 6),
            "uniform_loss": round(float(self.uniform_loss), 6),
            "member_losses": [round(float(v), 6) for v in self.member_losses],
            "voxels": int(self.voxels),
            **extra,
        }


def fit_weights(preds, target, known=None, *, eps: float = 1e-6,
                max_voxels: int = MAX_VOXELS) -> WeightFit:
    """Simplex weights that minimize the cross-entropy of the members' weighted mean.

    Args:
        preds: K ndarrays of the shape of ``target``, probabilities in [0, 1]
            (e.g. each of shape (Z, Y, X, C)).
        target: ndarray, 0/1 (boundaries or affinities).
        known: ndarray of the shape of ``target``, nonzero where the target is
            known; None: everywhere.
        eps: predictions are clipped to ``[eps, 1 - eps]``.
        max_voxels: at most this many known values are used, evenly spaced.

    Returns:
        A :class:`WeightFit`.

    Raises:
        InputError: shapes that differ, no prediction, or no known voxel.
    """
    target = np.asarray(target)
    if len(preds) == 0:
        raise InputError("preds: expected the predictions of one member or more, got none")
    for k, pred in enumerate(preds):
        if tuple(np.shape(pred)) != target.shape:
            raise InputError(
                f"preds[{k}]: expected the target's shape {target.shape}, got {np.shape(pred)}"
            )
    mask = np.ones(target.shape, bool) if known is None else np.asarray(known) > 0
    if mask.shape != target.shape:
        raise InputError(f"known: expected the target's shape {target.shape}, got {mask.shape}")
    if not mask.any():
        raise InputError("known: no known voxel to fit the weights on")
    index = _subsample(np.flatnonzero(mask), max_voxels)
    columns = np.stack([np.asarray(p).reshape(-1)[index] for p in preds]).astype(np.float32)
    return fit_columns(columns, target.reshape(-1)[index], eps=eps)


def fit_columns(columns: np.ndarray, target: np.ndarray, *, eps: float = 1e-6) -> WeightFit:
    """:func:`fit_weights` on known voxels only: ``columns`` (K, N), ``target`` (N,).

    Args:
        columns: ndarray of shape (K, N), each member's predictions of the N voxels.
        target: ndarray of shape (N,), 0/1.
        eps: predictions are clipped to ``[eps, 1 - eps]``.

    Returns:
        A :class:`WeightFit`.
    """
    from scipy.optimize import minimize

    columns = np.asarray(columns)
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    k, n = columns.shape
    if n == 0:
        raise InputError("no known voxel to fit the weights on")
    if not np.isfinite(columns).all():
        raise InputError("preds: the members' predictions hold NaN or infinite values")

    def loss_and_grad(w):
        p = np.clip(w @ columns, eps, 1 - eps)
        loss = -np.mean(t * np.log(p) + (1 - t) * np.log1p(-p))
        dp = (p - t) / (p * (1 - p)) / n  # d loss / d p
        return float(loss), columns @ dp

    uniform = np.full(k, 1.0 / k)
    member_losses = np.array([loss_and_grad(np.eye(k)[i])[0] for i in range(k)])
    if k == 1:
        weights = np.ones(1)
    else:
        result = minimize(
            loss_and_grad, uniform, jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * k,
            constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                          "jac": lambda w: np.ones_like(w)}],
            options={"maxiter": 500, "ftol": 1e-12},
        )
        weights = np.clip(result.x, 0.0, None)
        weights = weights / weights.sum() if weights.sum() > 0 else uniform
        if loss_and_grad(weights)[0] > loss_and_grad(uniform)[0]:  # never worse than the start
            weights = uniform
    return WeightFit(weights, loss_and_grad(weights)[0], loss_and_grad(uniform)[0],
                     member_losses, n)


def _subsample(index: np.ndarray, limit: int) -> np.ndarray:
    if index.size <= limit:
        return index
    return index[np.linspace(0, index.size - 1, limit).round().astype(np.int64)]


# --------------------------------------------------------------------------- validation data


def validation_targets(recipe, data, *, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """The targets of a recipe's validation sections, as the training sampler makes them.

    The recipe's ``sampler`` section (target, offsets, thickness) and the data
    set's label kind, unlabelled value, mask and labelled sections give a
    :class:`~emkit.sampling.targets.TargetSpec`. Each run of consecutive
    validation sections is converted whole (labels outside the run, the mask or
    the labelled sections are unknown; edges that leave the volume are unknown).

    Args:
        recipe: the :class:`~emkit.recipes.Recipe`.
        data: its :class:`~emkit.recipes.build.PreparedData`.
        ndim: 2 (targets per section) or 3, as the models that predict them.

    Returns:
        ``(target, known)``, float32 ndarrays of shape (Z, Y, X, C), Z the validation
        sections in order, the layout of :class:`~emkit.recipes.build.ValidationPipeline`'s
        predictions.
    """
    from emkit.sampling import read_ids
    from emkit.sampling.targets import TargetSpec, make_targets

    dataset, s = data.dataset, recipe.sampler
    spec = TargetSpec(
        kind=s.target, ndim=ndim,
        offsets=None if s.offsets is None else tuple(tuple(o) for o in s.offsets),
        thickness=s.thickness, label_kind=dataset.label_kind,
        unlabelled_value=dataset.unlabelled_value,
    )
    ctx = spec.context
    _, ny, nx = dataset.labels.shape
    targets, knowns = [], []
    for start, stop in _runs(data.validation_sections):
        box = (stop - start + 2 * ctx[0], ny + 2 * ctx[1], nx + 2 * ctx[2])
        ids = read_ids(dataset.labels, (start - ctx[0], -ctx[1], -ctx[2]), box, spec,
                       run=(start, stop), mask=dataset.mask,
                       labelled_sections=dataset.labelled_sections)
        if ndim == 2:
            for z in range(stop - start):
                target, known = make_targets(ids[z:z + 1], spec, (1, ny, nx))
                targets.append(target[None])
                knowns.append(known[None])
        else:
            target, known = make_targets(ids, spec, (stop - start, ny, nx))
            targets.append(target)
            knowns.append(known)
    return np.concatenate(targets), np.concatenate(knowns)


def _runs(sections) -> list[tuple[int, int]]:
    """Runs of consecutive sections as ``(start, stop)``, in order.

    >>> _runs([3, 4, 5, 9, 10])
    [(3, 6), (9, 11)]
    """
    runs: list[list[int]] = []
    for z in sections:
        if runs and z == runs[-1][1]:
            runs[-1][1] += 1
        else:
            runs.append([int(z), int(z) + 1])
    return [(a, b) for a, b in runs]


def fit_validation_weights(models, recipe, data=None, *, names=None,
                           max_voxels: int = MAX_VOXELS) -> WeightFit:
    """Fits member weights on a recipe's validation sections.

    Each member predicts the validation sections once, with the recipe's
    inference options (:class:`~emkit.recipes.build.ValidationPipeline`); only
    its values on known voxels are kept.

    Args:
        models: built Keras models (the members).
        recipe: the recipe whose data, validation sections and targets to use.
        data: its prepared data (default: :func:`~emkit.recipes.build.prepare_data`).
        names: how to name the members in errors.
        max_voxels: see :func:`fit_weights`.

    Returns:
        A :class:`WeightFit`.

    Raises:
        InputError: members that cannot be averaged, or whose channels do not match
            the recipe's target.
    """
    from emkit.ensemble.model import check_members
    from emkit.recipes import build

    shapes = check_members(models, names)
    data = build.prepare_data(recipe) if data is None else data
    target, known = validation_targets(recipe, data, ndim=shapes.ndim)
    if target.shape[-1] != shapes.out_channels:
        raise InputError(
            f"the members output {shapes.out_channels} channel(s) but recipe {recipe.name}'s "
            f"target ({recipe.sampler.target}) has {target.shape[-1]}"
        )
    index = _subsample(np.flatnonzero(known > 0), max_voxels)
    if index.size == 0:
        raise InputError(f"recipe {recipe.name}: the validation sections have no known voxel")
    validate = build.ValidationPipeline(recipe, data)
    columns = np.stack([validate.predict(m).reshape(-1)[index] for m in models])
    return fit_columns(columns, target.reshape(-1)[index])


__all__ = [
    "MAX_VOXELS",
    "WeightFit",
    "fit_columns",
    "fit_validation_weights",
    "fit_weights",
    "validation_targets",
]
