"""``emkit tune watershed`` on a run folder: the run's validation prediction, tuned with
:func:`emkit.tune.postprocess.tune_postprocess`, written beside the run and logged to it.

:func:`tune_run` takes a run folder (or a model and a recipe), gets the prediction once
(read from ``outputs/validation.h5`` or predicted by the model), tunes, writes
``tuned.yaml``, ``trials.csv``, ``tuning.json`` and the study's plots, and logs the
result to the run's MLflow run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emkit.errors import InputError, MissingDataError, OverwriteError
from emkit.io import write_text
from emkit.tune.postprocess import THRESHOLD_GRID, TuneResult, tune_postprocess
from emkit.tune.tables import pareto_csv, trials_csv


@dataclass
class RunTuneResult:
    """What :func:`tune_run` did.

    Attributes:
        tune: the study's :class:`TuneResult`.
        folder: where the files went (``<run>/tuning/<study>/`` by default).
        files: the files written (``tuned.yaml``, ``trials.csv``, ``tuning.json``,
            ``pareto.csv``, plots).
        plots_skipped: plot name -> why it was not drawn.
        run_id: the MLflow run that got the results, or None (no run id known).
        tracking_uri: the MLflow store of ``run_id``.
        predicted: True if the model was run (no stored validation prediction).
    """

    tune: TuneResult
    folder: Path
    files: list
    plots_skipped: dict
    run_id: str | None
    tracking_uri: str | None
    predicted: bool


def tune_run(source, *, recipe=None, overrides=(), n_trials: int, metric: str | None = None,
             study_name: str | None = None, storage: str | None = None, seed: int = 0,
             pareto: bool = False, thresholds=THRESHOLD_GRID, output=None,
             overwrite: bool = False, tracking_uri: str | None = None,
             timeout: float | None = None, progress: bool = True) -> RunTuneResult:
    """Tunes the postprocessing of a trained run (or model) on its validation sections.

    The prediction is read from ``<run>/outputs/validation.h5:pred`` (or a prediction
    cached in the output folder by an earlier call); otherwise the model predicts the
    validation sections once and the prediction is cached as ``validation.h5`` in the
    output folder. The labels, sections and voxel size come from the recipe's data.

    Writes into the output folder: ``tuned.yaml`` (the resolved recipe with the best
    ``postprocess.options``), ``trials.csv``, ``tuning.json`` (the summary),
    ``pareto.csv`` (with ``pareto``) and the study's plots, each atomically. When the run
    has an MLflow run id (``checkpoints/state.json``), the run gets metrics
    ``tune_<metric>_default``, ``tune_<metric>_best`` and ``tune_best_<option>`` (numeric
    options; at the run's training step), the tag ``emkit.tuned_postprocess`` (the
    override) and the files as artifacts under ``tuning/<study>``; its status is then
    set back to what it was. A bare model has no run: nothing goes to MLflow.

    Args:
        source: a run folder written by ``emkit recipe run``, or a ``.keras`` model.
        recipe: a recipe name or path; required for a bare model, and replaces a run
            folder's ``recipe.yaml``.
        overrides: ``key=value`` recipe overrides (e.g. ``data.root=/data``).
        n_trials: finished trials the study should have (see :func:`tune_postprocess`).
        metric: a key of :data:`OBJECTIVES`; default by method.
        study_name: default ``watershed-<run folder name or model stem>`` (``-pareto``
            added with ``pareto``).
        storage: the Optuna storage URL; default :func:`emkit.tune.study.storage_url`.
        seed: the TPE sampler's seed.
        pareto: a split-versus-merge study (see the module docstring).
        thresholds: agglomeration thresholds scanned per affinity trial.
        output: the output folder; required for a bare model. Default
            ``<run>/tuning/<study>``.
        overwrite: replace a ``tuned.yaml`` that another study wrote.
        tracking_uri: the MLflow store; default the recipe's ``tracking.uri``.
        timeout: seconds after which no new trial starts.
        progress: a progress bar on stderr.

    Returns:
        A :class:`RunTuneResult`.

    Raises:
        MissingDataError: no recipe, no prediction and no model, or the run id is not in
            the tracking store.
        InputError: a prediction whose shape does not fit the recipe's validation data.
        OverwriteError: ``tuned.yaml`` of another study is in the output folder.
    """
    from emkit.recipes import (
        apply_overrides,
        check_recipe,
        dict_to_recipe,
        dump_recipe,
        load_recipe,
        recipe_to_dict,
    )
    from emkit.recipes.build import ValidationPipeline, prepare_data
    from emkit.training import read_state
    from emkit.tune.study import storage_url, study_plots

    path = Path(source)
    if path.is_dir():
        recipe_file = path / "recipe.yaml"
        if recipe is None and not recipe_file.is_file():
            raise MissingDataError(
                f"run folder '{path}' has no recipe.yaml; pass --recipe NAME_OR_PATH to say "
                "which recipe made it"
            )
        state = read_state(path / "checkpoints")
        model_path, stored = path / "model.keras", path / "outputs" / "validation.h5"
        name = path.resolve().name
    elif path.is_file():
        if path.suffix != ".keras":
            raise InputError(f"'{path}' is neither a run folder nor a .keras model")
        if recipe is None:
            raise InputError(
                f"model '{path}' has no recipe; pass --recipe NAME_OR_PATH (it says which "
                "data, validation sections and postprocess method to tune)"
            )
        if output is None:
            raise InputError(f"model '{path}' is not in a run folder; pass --output DIR")
        state, model_path, stored, name = None, path, None, path.stem
    else:
        raise MissingDataError(
            f"'{path}' does not exist; expected a run folder (emkit recipe run) or a .keras model"
        )
    loaded = load_recipe(recipe if recipe is not None else path / "recipe.yaml", overrides,
                         segmentation_only=True)
    study_name = study_name or f"watershed-{name}{'-pareto' if pareto else ''}"
    folder = Path(output) if output is not None else path / "tuning" / study_name
    storage = storage_url(storage)
    _check_output(folder, study_name, storage, overwrite)
    run_id = state.run_id if state is not None else None
    uri = _check_run(run_id, tracking_uri or loaded.tracking.uri, path)

    data = prepare_data(loaded)
    validate = ValidationPipeline(loaded, data)
    cached = folder / "validation.h5"
    pred = None
    for candidate in (stored, cached):
        if candidate is not None and _has_pred(candidate):
            pred = _read_pred(candidate, loaded, validate.labels.shape, data)
            break
    predicted = pred is None
    if predicted:
        pred = _predict(model_path, validate, stored, cached)

    offsets = loaded.sampler.offsets
    result = tune_postprocess(
        pred, validate.labels, method=loaded.postprocess.method, n_trials=n_trials,
        metric=metric, base_options=loaded.postprocess.options, study_name=study_name,
        storage=storage, seed=seed, pareto=pareto, scored_sections=data.scored_sections,
        voxel_size_nm=data.dataset.voxel_size_nm, offsets=offsets, thresholds=thresholds,
        timeout=timeout, progress=progress,
    )
    tuned = dict_to_recipe(apply_overrides(recipe_to_dict(loaded), [result.override]))
    check_recipe(tuned)
    folder.mkdir(parents=True, exist_ok=True)
    files = [write_text(folder / "tuned.yaml", _tuned_header(result, path) + dump_recipe(tuned)),
             write_text(folder / "trials.csv", trials_csv(result.study, result.metric))]
    if pareto:
        files.append(write_text(folder / "pareto.csv", pareto_csv(result)))
    target = "rand split,rand merge" if pareto else result.metric
    plots, skipped = study_plots(result.study, folder, target_name=target)
    files.append(write_text(folder / "tuning.json", json.dumps(_summary(result, path), indent=2)
                              + "\n"))
    files += plots
    if run_id is not None:
        _log_to_run(uri, run_id, loaded, result, files, step=state.step)
    return RunTuneResult(result, folder, files, skipped, run_id, uri, predicted)


def _check_output(folder, study_name, storage, overwrite):
    tuned = folder / "tuned.yaml"
    if overwrite or not tuned.exists():
        return
    info = folder / "tuning.json"
    try:
        previous = json.loads(info.read_text()) if info.is_file() else {}
    except json.JSONDecodeError:
        previous = {}
    if previous.get("study") != study_name or previous.get("storage") != storage:
        raise OverwriteError(
            f"'{tuned}' was written by study {previous.get('study', 'unknown')!r}, not "
            f"{study_name!r}; pass --overwrite to replace it, or --output DIR"
        )


def _check_run(run_id, uri, path):
    """The tracking URI, after checking that it holds ``run_id`` (before any work)."""
    if run_id is None:
        return None
    from emkit.tracking import run_info, tracking_uri

    uri = tracking_uri(uri)
    try:
        run_info(uri, run_id)
    except Exception as exc:  # MLflow raises its own kinds for a missing run or store
        raise MissingDataError(
            f"MLflow run {run_id} of '{path}' (checkpoints/state.json) is not in the tracking "
            f"store {uri} ({type(exc).__name__}); pass --tracking-uri"
        ) from exc
    return uri


def _has_pred(path) -> bool:
    from emkit.io import list_keys

    return Path(path).is_file() and "pred" in list_keys(path)


def _read_pred(path, recipe, labels_shape, data):
    """The stored prediction, channels last, checked against the recipe's validation data."""
    from emkit.io import open_volume

    volume = open_volume(f"{path}:pred")
    channels = 1 if recipe.sampler.target == "boundaries" else len(recipe.sampler.offsets or [0] * 3)
    expected = tuple(labels_shape) if channels == 1 else (channels, *labels_shape)
    if tuple(volume.shape) != expected:
        raise InputError(
            f"'{path}:pred' has shape {tuple(volume.shape)}; the recipe's validation sections "
            f"{list(data.validation_sections)} (data.crop {recipe.data.crop}) need {expected}"
            f"{'' if channels == 1 else ' (channels first)'}; pass the --recipe and --set "
            "options the run was made with"
        )
    pred = np.asarray(volume[...])
    pred = pred.astype(np.float32) / np.float32(255) if pred.dtype == np.uint8 else \
        pred.astype(np.float32, copy=False)
    return pred[..., None] if pred.ndim == 3 else np.moveaxis(pred, 0, -1)


def _predict(model_path, validate, stored, cached):
    from emkit.io import write_volume
    from emkit.models.saving import load_model

    if not Path(model_path).is_file():
        where = f"'{stored}:pred' nor " if stored is not None else ""
        raise MissingDataError(f"neither {where}'{model_path}' exists: nothing to tune on")
    pred = validate.predict(load_model(model_path, compile=False))
    cached.parent.mkdir(parents=True, exist_ok=True)
    on_disk = np.moveaxis(pred, -1, 0)
    write_volume(f"{cached}:pred", on_disk[0] if on_disk.shape[0] == 1 else on_disk,
                 overwrite=True)
    return pred


def _tuned_header(result: TuneResult, source) -> str:
    return (
        f"# Tuned by `emkit tune watershed {source}`: study {result.study_name!r} in "
        f"{result.storage},\n# trial {result.best_trial} of {result.n_complete}: "
        f"{result.metric} {result.best_value:.4f} (recipe's options: "
        f"{_fmt(result.default_value)}).\n# The same as: --set '{result.override}'\n"
    )


def _summary(result: TuneResult, source) -> dict:
    return {
        "source": str(source), "study": result.study_name, "storage": result.storage,
        "method": result.method, "metric": result.metric, "direction": result.direction,
        "default_value": result.default_value, "best_value": result.best_value,
        "best_trial": result.best_trial, "n_complete": result.n_complete,
        "best_options": result.best_options, "override": result.override,
        "pareto": result.pareto,
    }


def _log_to_run(uri, run_id, recipe, result: TuneResult, files, *, step):
    from emkit.tracking import MlflowTracker, run_info

    status = run_info(uri, run_id)["status"]
    tracker = MlflowTracker(uri)
    tracker.start(experiment=recipe.tracking.experiment, run_name=result.study_name,
                  run_id=run_id)
    try:
        m = result.metric
        metrics = {f"tune_{m}_best": result.best_value, f"tune_{m}_default": result.default_value}
        for key, value in result.best_options.items():
            if key == "thresholds":
                key, value = "threshold", value[0]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[f"tune_best_{key}"] = value
        tracker.log_metrics(metrics, step=step)
        tracker.set_tags({"emkit.tuned_postprocess": result.override,
                          "emkit.tuned_study": f"{result.study_name} ({result.storage})"})
        for path in files:
            tracker.log_artifact(path, f"tuning/{result.study_name}")
    finally:
        if status != "RUNNING":  # a run still training keeps running
            tracker.finish(status)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


__all__ = ["RunTuneResult", "tune_run"]
