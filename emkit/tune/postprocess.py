"""Tune the postprocessing on validation predictions (the study on arrays).

The network's validation prediction is computed once (or read from the run's
``outputs/validation.h5``); an Optuna study then searches the options of the recipe's
``postprocess.method`` to optimise a validation metric. Each trial only segments and
scores, so a trial takes about a second on the bundled data.

* ``watershed_2d`` (boundary maps): every trial segments with the options drawn from
  :data:`SEARCH_SPACES` and scores the labelled validation sections.
* ``affinity_watershed`` (affinities): :func:`~emkit.postprocess.segment_affinities`
  computes several agglomeration thresholds from one watershed and one merge history.
  So a trial draws the watershed and scoring options, segments at every threshold of
  ``thresholds`` (default :data:`THRESHOLD_GRID`) in one call, and reports the best
  score over the grid; the threshold that gave it is the trial's user attribute
  ``threshold`` and becomes ``postprocess.options.thresholds: [t]``. The search then
  needs no trials for a one-dimensional parameter that costs nothing to scan, at the
  cost of memory: one label volume per grid value (pass a coarser grid for big volumes).

Trial 0 is always the recipe's current options (enqueued before any other), scored
exactly as the validation pipeline scores them (for affinities at the recipe's own
first threshold, not the grid's best), so the study's "default" value is an honest
"before" for its "best".

Objectives (:data:`OBJECTIVES`) are keys of :func:`emkit.metrics.evaluate`. Beware the
names: ``rand_error`` is the Rand *F-score* of thesis Table 3.1 ("Rand - Full"), higher
is better; maximising it minimises the table's Rand error ``1 - F``. ``adapted_rand_error``
is ``1 - F`` (CREMI/SNEMI3D), lower is better. Boundary recipes default to
``rand_error``, affinity recipes to ``adapted_rand_error``.

With ``pareto=True`` the study has two objectives, the Rand split and merge scores,
both maximised; its Pareto front is the choice of operating points (more splits versus
more merges). For affinities the agglomeration threshold is then a parameter of its own
(a trial has one point). The "best" of such a study is the trial with the best
``metric`` (a user attribute of every trial).

Studies live in :func:`emkit.tune.study.open_study`'s storage and are resumed by name:
``n_trials`` is the number of finished trials the study should have, so a killed
study continues where it stopped. A study remembers the method, metric, data digest
and base options it was made for, and refuses to mix in trials of another setup.

:func:`tune_postprocess` works on plain arrays; :func:`emkit.recipes.tune_run.tune_run`
is the command on a run folder.

>>> sorted(SEARCH_SPACES)
['affinity_watershed', 'watershed_2d']
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field

import numpy as np
import yaml

from emkit.errors import InputError, MissingDataError
from emkit.io.plain import to_plain
from emkit.postprocess import check_method_options

#: Search spaces per ``postprocess.method``: option -> ``{"low", "high"[, "int", "log"]}``
#: or ``{"choices": [...]}``; ``"when": (option, value)`` suggests an option only when an
#: earlier one has that value (Optuna's define-by-run), so listed after it. Sizes are
#: drawn on a log scale from 1, which means the same as 0 (no region is smaller than
#: one voxel) and is written back as 0.
SEARCH_SPACES: dict[str, dict[str, dict]] = {
    "watershed_2d": {
        "seeds": {"choices": ["threshold", "distance"]},
        "seed_threshold": {"low": 0.01, "high": 0.6},
        "min_size": {"low": 1, "high": 200, "int": True, "log": True},
        "min_height": {"low": 0.5, "high": 8.0, "when": ("seeds", "distance")},
        "smoothing": {"low": 0.0, "high": 3.0, "when": ("seeds", "distance")},
    },
    "affinity_watershed": {
        "low": {"low": 0.0001, "high": 0.3, "log": True},
        "high": {"low": 0.9, "high": 0.9999},
        "size_threshold": {"low": 1, "high": 2000, "int": True, "log": True},
        "merge_threshold": {"low": 0.0, "high": 0.5},
        "dust_size": {"low": 1, "high": 200, "int": True, "log": True},
        "scoring": {"choices": ["mean", "quantile"]},
        "quantile": {"low": 0.25, "high": 0.9, "when": ("scoring", "quantile")},
    },
}
#: The agglomeration thresholds a ``pareto`` study draws for affinities (one per trial).
PARETO_THRESHOLD = {"low": 0.05, "high": 0.95}
#: Agglomeration thresholds scanned in every affinity trial: 0.05, 0.10, ..., 0.95.
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))
#: Objective -> (direction, :func:`emkit.metrics.evaluate` keys it is computed from).
OBJECTIVES: dict[str, tuple[str, tuple[str, ...]]] = {
    "rand_error": ("maximize", ("rand_error",)),  # the Rand F-score of Table 3.1
    "adapted_rand_error": ("minimize", ("adapted_rand_error",)),
    "voi": ("minimize", ("voi_split", "voi_merge")),  # voi_split + voi_merge, bits
    "cremi_score": ("minimize", ("cremi_score",)),
}
#: The objective used when none is given.
DEFAULT_METRIC = {"watershed_2d": "rand_error", "affinity_watershed": "adapted_rand_error"}
#: The user attribute that marks trial 0, the recipe's own options.
DEFAULT_ATTR = "emkit.default"


@dataclass
class TuneResult:
    """What a postprocessing study found.

    Attributes:
        method: the ``postprocess.method``.
        metric: the objective (a key of :data:`OBJECTIVES`).
        direction: ``"maximize"`` or ``"minimize"``.
        best_options: the full ``postprocess.options`` to use (the base options with the
            best trial's values; for affinities ``thresholds: [t]``).
        best_value: ``metric`` at ``best_options``.
        default_value: ``metric`` at the base options (trial 0), or None if it failed.
        best_trial: the number of the best trial.
        n_complete: finished trials in the study (all processes, all calls).
        study_name: the study's name.
        storage: the storage URL.
        pareto: whether the study maximised (rand_split, rand_merge).
        pareto_front: with ``pareto``, one dict per trial on the front (sorted by split).
        study: the :class:`optuna.Study`.
    """

    method: str
    metric: str
    direction: str
    best_options: dict
    best_value: float
    default_value: float | None
    best_trial: int
    n_complete: int
    study_name: str
    storage: str
    pareto: bool = False
    pareto_front: list = field(default_factory=list)
    study: object = None

    @property
    def override(self) -> str:
        """The recipe override, e.g. ``postprocess.options={seed_threshold: 0.1}``."""
        return options_override(self.best_options)


def options_override(options: dict) -> str:
    """``postprocess.options={...}`` as one ``key=value`` line (YAML flow style).

    >>> options_override({"seed_threshold": 0.25, "min_size": 40})
    'postprocess.options={seed_threshold: 0.25, min_size: 40}'
    """
    text = yaml.safe_dump(to_plain(options), default_flow_style=True, sort_keys=False,
                          width=1 << 30)
    return f"postprocess.options={text.strip()}"


def tune_postprocess(pred, gt, *, method: str, n_trials: int, metric: str | None = None,
                     base_options: dict | None = None, study_name: str | None = None,
                     storage: str | None = None, seed: int = 0, pareto: bool = False,
                     scored_sections=None, voxel_size_nm=None, offsets=None,
                     thresholds=THRESHOLD_GRID, timeout: float | None = None,
                     progress: bool = True) -> TuneResult:
    """Searches postprocessing options that optimise ``metric`` on one prediction.

    Args:
        pred: ndarray of shape (Z, Y, X) or (Z, Y, X, 1), a boundary map (1 = boundary)
            for ``watershed_2d``; ndarray of shape (Z, Y, X, C), affinities channels
            last, for ``affinity_watershed``. Float in [0, 1].
        gt: ndarray of shape (Z, Y, X), the labels (0 unlabelled), or ISBI labels (uint8
            0/255, scored section by section as :func:`emkit.metrics.evaluate` does).
        method: ``"watershed_2d"`` or ``"affinity_watershed"``.
        n_trials: the number of finished trials the study should have; a study that has
            them already runs none.
        metric: a key of :data:`OBJECTIVES`; default :data:`DEFAULT_METRIC`.
        base_options: the recipe's ``postprocess.options``, the trial-0 baseline; options
            not searched keep these values.
        study_name: default ``watershed-<method>-<digest of pred and gt>``.
        storage: an Optuna storage URL (default :func:`emkit.tune.study.storage_url`).
        seed: the seed of the TPE sampler.
        pareto: maximise (rand_split, rand_merge) instead (see the module docstring).
        scored_sections: indices into Z of the sections to score (labelled ones);
            default all. Affinities are segmented on the whole volume first.
        voxel_size_nm: (z, y, x), needed for ``cremi_score``.
        offsets: the affinity channels' offsets (the recipe's ``sampler.offsets``).
        thresholds: agglomeration thresholds scanned per affinity trial.
        timeout: stop starting trials after this many seconds.
        progress: a progress bar over trials on stderr.

    Returns:
        A :class:`TuneResult`.

    Raises:
        InputError: unknown method, metric or option; shapes that do not match; a study
            of this name made for another method, metric, data or base options.
    """

    from emkit.tune import study as optuna_study
    from emkit.tune.study import (
        COMPLETE,
        RUNNING,
        WAITING,
        claim_study,
        open_study,
        optimize_with_bar,
        storage_url,
    )

    pred, gt, scored, metric = _check_inputs(pred, gt, method, metric, scored_sections,
                                             voxel_size_nm, n_trials)
    base = dict(base_options or {})
    check_method_options(method, base)
    grid = tuple(float(t) for t in thresholds)
    if method == "affinity_watershed" and not grid:
        raise InputError("thresholds: expected at least one agglomeration threshold")
    gt_seg, per_section = _ground_truth(gt[scored])
    digest = _digest(pred, gt, scored)
    study_name = study_name or f"watershed-{method}-{digest[:12]}"
    storage = storage_url(storage)
    space = dict(SEARCH_SPACES[method])
    if pareto and method == "affinity_watershed":
        space["threshold"] = PARETO_THRESHOLD

    direction = OBJECTIVES[metric][0]
    with optuna_study.quiet():
        sampler = optuna_study.tpe_sampler(seed)
        study = open_study(study_name, storage=storage, sampler=sampler,
                           direction=None if pareto else direction,
                           directions=["maximize", "maximize"] if pareto else None)
        claim_study(study, {
            "emkit.method": method, "emkit.metric": metric, "emkit.pareto": bool(pareto),
            "emkit.data_sha256": digest, "emkit.base_options": base,
            "emkit.thresholds": list(grid) if method == "affinity_watershed" else None,
        })
        live = (COMPLETE, WAITING, RUNNING)  # a failed trial 0 is tried again
        if not any(t.user_attrs.get(DEFAULT_ATTR)
                   for t in study.get_trials(deepcopy=False, states=live)):
            study.enqueue_trial(_default_params(method, base, space),
                                user_attrs={DEFAULT_ATTR: True})

        def score(seg):
            return _scores(seg[scored] if method != "watershed_2d" else seg, gt_seg,
                           per_section, metric, voxel_size_nm)

        seg_pred = pred[scored] if method == "watershed_2d" else pred

        def objective(trial):
            default = bool(trial.user_attrs.get(DEFAULT_ATTR))
            options = {**base, **suggest_options(trial, space)}
            if method == "watershed_2d":
                results = [(None, score(_segment(seg_pred, method, options, None, offsets)[0]))]
            else:
                own = list(options.pop("thresholds", [0.5]))[:1]  # the recipe's first
                if pareto:
                    ts = [options.pop("threshold")]
                else:
                    ts = own if default else list(grid)
                segs = _segment(seg_pred, method, options, ts, offsets)
                results = [(t, score(seg)) for t, seg in zip(ts, segs)]
                if len(results) > 1:
                    trial.set_user_attr("values_by_threshold",
                                        {f"{t:g}": s[metric] for t, s in results})
            sign = 1 if direction == "maximize" else -1
            t, best = max(results, key=lambda r: sign * r[1][metric])
            if t is not None:
                trial.set_user_attr("threshold", float(t))
            for key in (metric, "rand_split", "rand_merge"):
                trial.set_user_attr(key, best[key])
            return (best["rand_split"], best["rand_merge"]) if pareto else best[metric]

        remaining = n_trials - len(study.get_trials(deepcopy=False, states=(COMPLETE,)))
        if remaining > 0:
            optimize_with_bar(study, objective, n_trials=n_trials, remaining=remaining,
                              timeout=timeout, progress=progress, show_best=not pareto)
        return _result(study, method, metric, direction, base, storage, pareto)


def score_options(pred, gt, options: dict, *, method: str, scored_sections, metric: str,
                  voxel_size_nm=None, offsets=None) -> dict:
    """Segments ``pred`` with ``options`` and scores the ``scored_sections`` as a trial does.

    Boundary maps are segmented on the scored sections only; affinities on the whole
    volume (the 3D watershed needs the context), at the first of ``options``'
    ``thresholds`` (default 0.5), then cut to the scored sections.

    Returns:
        ``{metric: value, "rand_split": ..., "rand_merge": ...}``.

    Args:
        pred: the prediction, (Z, Y, X) boundaries or (Z, Y, X, C) affinities.
        gt: the ground truth, (Z, Y, X).
        options: the postprocessing options.
        method: the ``postprocess.method``.
        scored_sections: the sections scored.
        metric: the metric the study optimizes (always returned with split and merge).
        voxel_size_nm: for ``cremi_score``.
        offsets: the affinity offsets, for affinities.
    """
    pred, gt, scored, metric = _check_inputs(pred, gt, method, metric, scored_sections,
                                             voxel_size_nm, 1)
    options = dict(options)
    check_method_options(method, options)
    gt_seg, per_section = _ground_truth(gt[scored])
    if method == "watershed_2d":
        seg = _segment(pred[scored], method, options, None, offsets)[0]
    else:
        thresholds = list(options.pop("thresholds", [0.5]))[:1]
        seg = _segment(pred, method, options, thresholds, offsets)[0][scored]
    return _scores(seg, gt_seg, per_section, metric, voxel_size_nm)


def suggest_options(trial, space: dict) -> dict:
    """The options a trial draws from ``space`` (see :data:`SEARCH_SPACES`), in order.

    Args:
        trial: an Optuna trial.
        space: option -> range, as in :data:`SEARCH_SPACES`.
    """
    options: dict = {}
    for name, spec in space.items():
        when = spec.get("when")
        if when is not None and options.get(when[0]) != when[1]:
            continue
        if "choices" in spec:
            options[name] = trial.suggest_categorical(name, list(spec["choices"]))
        elif spec.get("int"):
            options[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]),
                                              log=spec.get("log", False))
        else:
            options[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]),
                                                log=spec.get("log", False))
    return options


# --------------------------------------------------------------------------- helpers


def _check_inputs(pred, gt, method, metric, scored_sections, voxel_size_nm, n_trials):
    if method not in SEARCH_SPACES:
        raise InputError(f"method: got {method!r}; allowed: {', '.join(SEARCH_SPACES)}")
    metric = metric or DEFAULT_METRIC[method]
    if metric not in OBJECTIVES:
        raise InputError(f"metric: got {metric!r}; allowed: {', '.join(OBJECTIVES)}")
    if metric == "cremi_score" and voxel_size_nm is None:
        raise InputError("metric cremi_score needs the voxel size (voxel_size_nm)")
    if int(n_trials) < 1:
        raise InputError(f"n_trials: expected an int >= 1, got {n_trials}")
    pred, gt = np.asarray(pred), np.asarray(gt)
    if method == "watershed_2d" and pred.ndim == 4 and pred.shape[-1] == 1:
        pred = pred[..., 0]
    wanted = "(Z, Y, X) boundaries" if method == "watershed_2d" else "(Z, Y, X, C) affinities"
    if pred.ndim != (3 if method == "watershed_2d" else 4):
        raise InputError(f"pred has shape {pred.shape}; {method} expects {wanted}")
    if gt.shape != pred.shape[:3]:
        raise InputError(f"gt has shape {gt.shape}; expected {pred.shape[:3]}, pred's (Z, Y, X)")
    scored = list(range(gt.shape[0]) if scored_sections is None else scored_sections)
    if not scored or not all(0 <= int(z) < gt.shape[0] for z in scored):
        raise InputError(f"scored_sections: {scored} are not indices into {gt.shape[0]} sections")
    return pred, gt, [int(z) for z in scored], metric


def _default_params(method, base, space):
    """Trial 0's parameters: the base options, else the function's defaults."""
    from emkit.postprocess import postprocess_function

    signature = inspect.signature(postprocess_function(method)).parameters
    params: dict = {}
    for name, spec in space.items():
        when = spec.get("when")
        if when is not None and params.get(when[0]) != when[1]:
            continue
        if name == "threshold":
            value = next(iter(base.get("thresholds", [0.5])))
        else:
            value = base.get(name, signature[name].default)
        if spec.get("int") and spec["low"] == 1 and value == 0:
            value = 1  # the same result (see SEARCH_SPACES), inside the range
        params[name] = to_plain(value)
    return params


def _ground_truth(gt):
    """Ground truth as a segmentation once (not per trial), and whether it is per section."""
    from emkit.metrics.evaluate import detect_gt_kind
    from emkit.targets import isbi_labels_to_seg

    if detect_gt_kind(gt) == "isbi":
        return isbi_labels_to_seg(gt), True
    return gt, False


def _scores(seg, gt_seg, per_section, metric, voxel_size_nm) -> dict:
    """The scores of one segmentation, as :meth:`ValidationPipeline.evaluate` computes them."""
    from emkit.metrics import evaluate

    keys = (*OBJECTIVES[metric][1], "rand_split", "rand_merge")
    scores = evaluate(seg, gt_seg, pred_kind="segmentation", gt_kind="segmentation",
                      per_section=per_section, metrics=keys, voxel_size_nm=voxel_size_nm)
    values = {k: float(scores[k]) for k in ("rand_split", "rand_merge")}
    values[metric] = float(sum(scores[k] for k in OBJECTIVES[metric][1]))
    return values


def _segment(pred, method, options, thresholds, offsets):
    from emkit.postprocess import segment_affinities, watershed_2d

    if method == "watershed_2d":
        return [watershed_2d(pred, **options)]
    options = dict(options)
    if offsets is not None:
        options.setdefault("offsets", [tuple(o) for o in offsets])
    return segment_affinities(pred, thresholds=thresholds, **options)


def _digest(pred, gt, scored) -> str:
    h = hashlib.sha256()
    for array in (pred, gt):
        h.update(f"{array.shape}{array.dtype}".encode())
        h.update(np.ascontiguousarray(array).tobytes())
    h.update(str(scored).encode())
    return h.hexdigest()


def _result(study, method, metric, direction, base, storage, pareto) -> TuneResult:
    from emkit.tune.study import COMPLETE

    finished = study.get_trials(deepcopy=False, states=(COMPLETE,))
    if not finished:
        raise MissingDataError(f"study {study.study_name!r} in {storage} has no finished trial")
    sign = 1 if direction == "maximize" else -1
    best = max(finished, key=lambda t: (sign * t.user_attrs[metric], -t.number))
    default = next((t for t in finished if t.user_attrs.get(DEFAULT_ATTR)), None)
    front = []
    if pareto:
        for t in sorted(study.best_trials, key=lambda t: (t.values[0], t.number)):
            front.append({"trial": t.number, "rand_split": t.values[0], "rand_merge": t.values[1],
                          metric: t.user_attrs[metric], "options": trial_options(t, method, base)})
    return TuneResult(
        method=method, metric=metric, direction=direction,
        best_options=trial_options(best, method, base), best_value=best.user_attrs[metric],
        default_value=None if default is None else default.user_attrs[metric],
        best_trial=best.number, n_complete=len(finished), study_name=study.study_name,
        storage=storage, pareto=pareto, pareto_front=front, study=study,
    )


def trial_options(trial, method: str, base: dict) -> dict:
    """The full ``postprocess.options`` of a finished trial (base options + its values).

    Args:
        trial: a finished trial.
        method: the ``postprocess.method``.
        base: the options the study started from.
    """
    space = SEARCH_SPACES[method]
    options = to_plain(base)
    for name, value in trial.params.items():
        spec = space.get(name, {})
        if spec.get("int") and spec["low"] == 1 and value == 1:
            value = 0  # the same result; 0 reads as "off"
        if name != "threshold":
            options[name] = value
    if method == "affinity_watershed":
        t = trial.user_attrs.get("threshold", trial.params.get("threshold"))
        options["thresholds"] = [float(t)]
    return options


__all__ = [
    "DEFAULT_METRIC",
    "OBJECTIVES",
    "PARETO_THRESHOLD",
    "SEARCH_SPACES",
    "THRESHOLD_GRID",
    "TuneResult",
    "options_override",
    "score_options",
    "suggest_options",
    "trial_options",
    "tune_postprocess",
]
