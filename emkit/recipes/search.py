"""Hyperparameter search over a whole recipe (``emkit tune recipe``).

Each Optuna trial is one recipe run (:func:`emkit.recipes.run.run_recipe`) with the
trial's values as ``key=value`` overrides (:mod:`emkit.recipes.space`), tracked as an
MLflow run nested under one parent run per study. Training reports the validation
metric as it goes, so a median or Hyperband pruner stops poor trials early; a pruned
trial's run ends KILLED. Its value is the final run's validation metric.

Where things live::

    <output_root>/tune-<study>/trial-<n>/   the run folder of trial n
    <output_root>/tune-<study>/study/       plots and trials.csv (also in the parent run)

The study lives in an Optuna storage that outlives the process
(:mod:`emkit.tune.study`: SQLite under ``mlruns/`` by default). Several processes, on
one machine or many, that name the same study and storage share it (Optuna's own
distributed mode); each stops once the study holds ``n_trials`` finished (complete or
pruned) trials. As each process checks only after its own trial ends, a study can end
with up to (processes - 1) trials more than ``n_trials``.

Resuming: a process killed mid-trial leaves the trial RUNNING; once its heartbeat is
``grace`` seconds old, the next process to ask for a trial marks it FAIL and runs a
retry with the same parameters in the same folder, which :func:`run_recipe` resumes
from its last checkpoint into the same MLflow run. A trial stopped by Ctrl-C is queued
for the same kind of retry at once.

The parent run: the first process to open a study creates it and keeps its id in the
study's user attribute ``mlflow_parent_run_id``. Two processes that open a new study
at the same moment may both create one; each then waits a second, looks up the
parents of the study created in the last minute (tag ``emkit.study``) and keeps the
oldest; the other is deleted. The parent ends FINISHED when the study has its
``n_trials`` and no trial is running; until then it stays RUNNING, as other processes
may still add trials to it.
"""

from __future__ import annotations

import math
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from emkit.errors import InputError, OverwriteError
from emkit.recipes.space import check_space, params_to_overrides, read_space, suggest
from emkit.tracking import MlflowTracker
from emkit.tracking import tracking_uri as resolve_tracking_uri
from emkit.tune.study import (
    COMPLETE,
    GRACE_SECONDS,
    HEARTBEAT_SECONDS,
    PRUNED,
    PRUNERS,
    RUNNING,
    TrialPruned,
    TrialSeededSampler,
    claim_study,
    fail_stale_trials,
    log_warnings_only,
    make_pruner,
    max_trials,
    open_storage,
    open_study,
    requeue,
    retried_trial_number,
    sqlite_lock,
    storage_url,
    study_plots,
)

#: Metrics where larger is better (the Rand and information F-scores; ``rand_error``
#: holds the Rand F-score of Table 3.1). Every other metric is minimized.
SCORE_METRICS = ("rand_error", "rand_split", "rand_merge", "v_rand", "v_info")
#: The study's user attribute that holds the parent MLflow run.
PARENT_ATTR = "mlflow_parent_run_id"
STUDY_TAG = "emkit.study"
TRIAL_TAG = "emkit.trial"
ROLE_TAG = "emkit.role"
FINISHED_STATES = (COMPLETE, PRUNED)
#: Parents of one study created this close together (ms) are one race; the oldest wins.
RACE_WINDOW_MS = 60_000
#: MLflow's smallest limit on a tag value's length (older servers).
MAX_TAG_LENGTH = 5000


@dataclass
class SearchResult:
    """What a search left in its study.

    Attributes:
        study_name: the Optuna study.
        storage: its storage URL.
        best_value: the best trial's metric, or None while no trial is complete.
        best_params: the best trial's Optuna parameters (a categorical list or mapping
            as its YAML text).
        best_overrides: ``key=value`` strings that reproduce the best trial's recipe.
        n_complete: complete trials in the study (all processes).
        n_pruned: pruned trials in the study.
        parent_run_id: the study's MLflow parent run.
        plots: the PNG files written (see :func:`emkit.tune.study.study_plots`).
    """

    study_name: str
    storage: str
    best_value: float | None
    best_params: dict
    best_overrides: list
    n_complete: int
    n_pruned: int
    parent_run_id: str
    plots: list = field(default_factory=list)


class PrunedRun(TrialPruned):
    """Raised from a run's validation hook when the pruner stops the trial.

    ``run_status`` makes :func:`emkit.recipes.run.run_recipe` end the MLflow run KILLED.
    """

    run_status = "KILLED"


def metric_direction(recipe, metric: str | None = None) -> tuple[str, str]:
    """``(metric, "maximize" | "minimize")``: the recipe's ``train.best_metric`` and
    ``best_mode`` by default; for a named ``metric``, maximize the F-scores of
    :data:`SCORE_METRICS` and minimize the rest.

    Args:
        recipe: the loaded recipe.
        metric: a validation metric (a key of ``emkit.metrics.evaluate.METRICS``), or
            None for the recipe's.

    Raises:
        InputError: ``metric`` is not a validation metric.
    """
    from emkit.metrics.evaluate import METRICS

    if metric is None:
        metric = recipe.train.best_metric
        direction = "maximize" if recipe.train.best_mode == "max" else "minimize"
    else:
        direction = "maximize" if metric in SCORE_METRICS else "minimize"
    if metric not in METRICS:
        raise InputError(f"metric {metric!r}: expected one of {', '.join(METRICS)}")
    return metric, direction


def recipe_pruner(pruner, recipe):
    """The Optuna pruner for ``"median"``, ``"hyperband"`` or ``"none"`` (or ``pruner``
    itself when it is already an Optuna pruner); see :func:`emkit.tune.study.make_pruner`.

    Steps are optimizer steps, reported at each validation (``train.validate_every``).

    Args:
        pruner: ``"median"``, ``"hyperband"``, ``"none"`` or an Optuna pruner.
        recipe: the loaded recipe; its ``train.validate_every`` (else ``train.max_steps``)
            and ``train.max_steps`` set the pruner's steps.
    """
    train = recipe.train
    return make_pruner(pruner, every=train.validate_every or train.max_steps,
                       max_steps=train.max_steps)


def validation_hook(trial, metric: str):
    """``on_validation(step, metrics)`` for :func:`run_recipe`: reports ``metrics[metric]``
    to the trial at ``step`` and raises :class:`PrunedRun` when the pruner says so.
    Validations without the metric (None or NaN) are skipped.

    Args:
        trial: the Optuna trial.
        metric: the validation metric to report.
    """

    def on_validation(step, metrics):
        """Reports ``metrics[metric]`` to the trial; raises :class:`PrunedRun` to prune.

        Args:
            step: the optimizer step of the validation.
            metrics: the validation metrics by name.
        """
        value = metrics.get(metric)
        if value is None or not math.isfinite(float(value)):
            return
        trial.report(float(value), int(step))
        if trial.should_prune():
            raise PrunedRun(f"trial {trial.number} pruned at step {step}: {metric}={value:.4g}")

    return on_validation


def search_recipe(recipe: str, space: str | Path, *, n_trials: int, overrides=(),
                  quick: bool = False, study_name: str | None = None, storage: str | None = None,
                  pruner="median", metric: str | None = None, tracking_uri: str | None = None,
                  output_root: str | None = None, timeout: float | None = None, seed: int = 0,
                  heartbeat: int | None = HEARTBEAT_SECONDS, grace: int | None = GRACE_SECONDS,
                  progress: bool = True) -> SearchResult:
    """Searches a recipe's hyperparameters until the study holds ``n_trials`` finished trials.

    Args:
        recipe: a shipped recipe's name or a recipe YAML path.
        space: the search-space YAML (:mod:`emkit.recipes.space`).
        n_trials: finished (complete or pruned) trials the study should hold, counted
            over every process that shares it.
        overrides: ``key=value`` strings applied to every trial before its own values.
        quick: apply the recipe's ``--quick`` budget to every trial.
        study_name: the study; default ``<recipe name>-search``. Letters, digits, ``_``,
            ``.`` and ``-``.
        storage: an Optuna RDB URL (default :data:`emkit.tune.study.DEFAULT_STORAGE`).
        pruner: ``"median"``, ``"hyperband"``, ``"none"`` or an Optuna pruner.
        metric: the validation metric to optimize; default the recipe's ``train.best_metric``.
        tracking_uri: the MLflow store; default the recipe's ``tracking.uri``.
        output_root: where ``tune-<study>/`` goes; default the recipe's ``run.output_root``.
        timeout: stop starting trials after this many seconds (a running one finishes).
        seed: the sampler's seed (see :class:`TrialSeededSampler`).
        heartbeat: seconds between a running trial's heartbeats (None: no heartbeat,
            so trials of a killed process are never retried).
        grace: seconds without a heartbeat after which a trial counts as dead.
        progress: print one line per finished trial.

    Returns:
        A :class:`SearchResult` for the whole study.

    Raises:
        InputError: a bad recipe, override, space file, metric, pruner or study name,
            or an existing study that optimizes another metric or direction.
        OverwriteError: a new trial's folder already holds files (an earlier study of
            the same name).
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise InputError(f"n_trials must be a positive integer, got {n_trials!r}")
    base_overrides = [*overrides, *([f"tracking.uri={tracking_uri}"] if tracking_uri else [])]
    from emkit.recipes import load_recipe

    base = load_recipe(recipe, base_overrides, quick=quick, segmentation_only=True)
    params = read_space(space)
    check_space(params, recipe, base_overrides, quick=quick, source=str(space))
    metric, direction = metric_direction(base, metric)
    name = study_name or f"{base.name}-search"
    if not re.fullmatch(r"[\w.\-]+", name):
        raise InputError(f"study name {name!r}: use letters, digits, '_', '.' and '-' only")
    url = storage_url(storage)

    log_warnings_only()
    uri = resolve_tracking_uri(base.tracking.uri)
    pruner = recipe_pruner(pruner, base)
    with sqlite_lock(url):  # the first process creates the tables, the others wait
        study = _retrying(lambda: open_study(
            name, storage=open_storage(url, heartbeat=heartbeat, grace=grace),
            direction=direction, sampler=TrialSeededSampler(seed), pruner=pruner))
    with sqlite_lock(uri):
        _retrying(lambda: MlflowTracker(uri).ensure_store())
    if study.direction.name.lower() != direction:
        raise InputError(
            f"study {study.study_name!r} exists and is set to {study.direction.name.lower()}; "
            f"this search would {direction} {metric}: choose another study name"
        )
    claim_study(study, {"metric": metric, "recipe": base.name})
    root = Path(output_root or base.run.output_root) / f"tune-{name}"
    parent = _parent_run(study, uri, base.tracking.experiment, tags={
        STUDY_TAG: name, ROLE_TAG: "study", "emkit.recipe": base.name, "emkit.metric": metric,
        "emkit.direction": direction, "emkit.space": str(Path(space).resolve()),
        "emkit.overrides": " ".join(base_overrides)[:MAX_TAG_LENGTH]})

    if _n_finished(study) < n_trials:
        objective = _objective(study, recipe=recipe, params=params, overrides=base_overrides,
                               quick=quick, metric=metric, root=root, uri=uri, parent=parent)
        callbacks = [max_trials(n_trials, states=FINISHED_STATES)]
        if progress:
            callbacks.append(_print_trial(metric))
        study.optimize(objective, timeout=timeout, callbacks=callbacks, gc_after_trial=True)
    return _summarize(study, params=params, metric=metric, n_trials=n_trials, parent=parent,
                      uri=uri, folder=root / "study", storage=url)


def _objective(study, *, recipe, params, overrides, quick, metric, root: Path, uri, parent):
    """The function Optuna calls per trial: one recipe run, its final metric returned."""
    from emkit.recipes import load_recipe
    from emkit.recipes.run import run_recipe

    def objective(trial):
        frozen = _frozen(study, trial.number)
        original = retried_trial_number(frozen)
        retried = original is not None
        number = original if retried else trial.number
        trial_overrides = params_to_overrides(suggest(trial, params), params)
        run = load_recipe(recipe, [*overrides, *trial_overrides], quick=quick)
        folder = root / f"trial-{number}"
        if not retried and folder.exists() and any(folder.iterdir()):
            raise OverwriteError(
                f"trial folder {str(folder)!r} already holds files (an earlier study named "
                f"{study.study_name!r}?); delete it or choose another study name"
            )
        for key, value in (("output_dir", str(folder.resolve())), ("host", socket.gethostname()),
                           ("pid", os.getpid()), ("overrides", trial_overrides)):
            trial.set_user_attr(key, value)
        tracker = MlflowTracker(uri, tags={STUDY_TAG: study.study_name, TRIAL_TAG: number},
                                on_start=lambda run_id: trial.set_user_attr("run_id", run_id))
        try:
            result = run_recipe(run, output=folder, resume=retried,
                                tracker=tracker, parent_run_id=parent,
                                on_validation=validation_hook(trial, metric))
        except KeyboardInterrupt:
            _requeue(study, trial.number, number)
            raise
        finally:
            import keras

            keras.backend.clear_session()
        value = result.metrics.get(metric)
        if value is None:
            raise InputError(
                f"metric {metric!r} is not computed for recipe {run.name!r} (got "
                f"{', '.join(k for k, v in result.metrics.items() if v is not None)}); pass another"
            )
        return float(value)

    return objective


def _frozen(study, number: int):
    """The stored trial ``number`` (with its system attributes, which a Trial hides)."""
    for trial in study.get_trials(deepcopy=False):
        if trial.number == number:
            return trial
    raise KeyError(number)


def _requeue(study, number: int, original: int) -> None:
    """Queues a retry of interrupted trial ``number`` as the heartbeat's retry would."""
    requeue(study, _frozen(study, number), original)


def _n_finished(study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def _print_trial(metric: str):
    def callback(study, trial):
        """Prints one line for a finished trial (an Optuna ``optimize`` callback).

        Args:
            study: the Optuna study.
            trial: the trial that finished (a ``FrozenTrial``).
        """
        value = "" if trial.value is None else f" {metric}={trial.value:.4g}"
        print(f"{study.study_name}: trial {trial.number} {trial.state.name.lower()}{value} "
              f"{' '.join(trial.user_attrs.get('overrides', []))}", flush=True)

    return callback


def _retrying(call, attempts: int = 3):
    """``call()``, tried again after a pause if it fails: processes that start together on
    a new SQLite store race to create its tables (Optuna's, MLflow's), and the losers fail
    once. (The race to create the MLflow experiment is the tracker's own business.)"""
    for attempt in range(attempts):
        try:
            return call()
        except Exception:  # SQLAlchemy's and MLflow's kinds; the last failure is raised
            if attempt == attempts - 1:
                raise
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")


def _parent_run(study, uri: str, experiment: str, *, tags: dict) -> str:
    """The study's parent MLflow run, (re)started as RUNNING; created if the study has none."""
    tracker = MlflowTracker(uri)
    known = study.user_attrs.get(PARENT_ATTR)
    if known and tracker.is_active(known):
        return tracker.start(experiment=experiment, run_name="", run_id=known)
    own = tracker.start(experiment=experiment, run_name=f"tune-{study.study_name}")
    tracker.set_tags(tags)
    time.sleep(1.0)  # let a run created at the same moment elsewhere get its tags
    runs = dict(tracker.runs_tagged(own, {STUDY_TAG: study.study_name, ROLE_TAG: "study"}))
    started = runs.get(own, 0)
    rivals = [(t, r) for r, t in runs.items() if t >= started - RACE_WINDOW_MS]
    winner = min([(started, own), *rivals])[1]
    if winner != own:
        tracker.delete_run(own)
    study.set_user_attr(PARENT_ATTR, winner)
    return winner


def _summarize(study, *, params, metric, n_trials, parent, uri, folder: Path, storage: str) -> SearchResult:
    """The study's result, logged to the parent run (finished once the study is done)."""
    fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    n_complete = states.count(COMPLETE)
    n_pruned = states.count(PRUNED)
    best = study.best_trial if n_complete else None
    best_overrides = params_to_overrides(best.params, params) if best else []
    plots, _ = study_plots(study, folder, target_name=metric)
    table = folder / "trials.csv"
    table.parent.mkdir(parents=True, exist_ok=True)
    study.trials_dataframe().to_csv(table, index=False)

    tracker = MlflowTracker(uri)
    tracker.run_id = parent  # log without restarting it: another process may have finished it
    tracker.log_metrics({"n_complete": n_complete, "n_pruned": n_pruned,
                         **({f"best_{metric}": best.value} if best else {})},
                        step=n_complete + n_pruned)
    if best:
        tracker.set_tags({"emkit.best_trial": best.number,
                          "emkit.best_run_id": best.user_attrs.get("run_id", ""),
                          "emkit.best_overrides": " ".join(best_overrides)[:MAX_TAG_LENGTH]})
    for path in [*plots, table]:
        tracker.log_artifact(path, "study")
    running = study.get_trials(deepcopy=False, states=(RUNNING,))
    if n_complete + n_pruned >= n_trials and not running:  # the last process to stop ends it
        tracker.finish("FINISHED")
    return SearchResult(
        study_name=study.study_name, storage=storage, best_value=best.value if best else None,
        best_params=dict(best.params) if best else {}, best_overrides=best_overrides,
        n_complete=n_complete, n_pruned=n_pruned, parent_run_id=parent, plots=plots)


__all__ = [
    "PRUNERS",
    "SCORE_METRICS",
    "PrunedRun",
    "SearchResult",
    "TrialSeededSampler",
    "metric_direction",
    "recipe_pruner",
    "search_recipe",
    "validation_hook",
]
