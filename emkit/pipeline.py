"""Run a recipe end to end: the short function that calls the stages in order.

data -> model -> sampler -> ``fit`` with callbacks (loss, validation, checkpoints,
histograms, feature maps, budget) -> predict, segment and evaluate the validation
sections -> write outputs and exports -> log everything to one tracking run.

A run lives in one folder, ``<run.output_root>/<recipe>-<timestamp>/``::

    checkpoints/last.keras   every train.checkpoint_every steps, with the optimizer
    checkpoints/best.keras   best validation train.best_metric so far
    checkpoints/state.json   run id, step, epoch, elapsed minutes, best score, finished
    recipe.yaml              the resolved recipe; after tuning, with the tuned
                             postprocess.options (``emkit segment --recipe`` reads them)
    model.keras              the trained model, for `emkit predict`
    tuning/                  the postprocessing studies (optuna.db) and their plots
    outputs/                 validation.h5 (pred, seg) and the challenge exports

With ``train.mode: dense`` a pooled net (N4, VD2D) trains in its dense form
(:mod:`emkit.training.dense`); ``last.keras`` holds that form, ``best.keras`` and
``model.keras`` the patch classifier. With ``postprocess.tune`` (the default) the
postprocessing is tuned on the validation sections after training
(:mod:`emkit.tune.heldout`), and the run reports the score of sections each tuner
did not see.

Calling :func:`run_recipe` again on a folder with an unfinished ``state.json``
resumes from ``last.keras`` into the same tracking run.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emkit.errors import InputError, OverwriteError
from emkit.recipes import Recipe, dump_recipe, flatten, recipe_to_dict


@dataclass
class RunResult:
    """What a run produced.

    Attributes:
        run_id: the tracking run.
        output_dir: the run folder.
        model_path: the trained ``.keras`` model.
        steps: optimizer steps done in all.
        metrics: the final validation metrics.
        stopped: why training stopped.
        resumed: whether this call continued an earlier run.
        outputs: files written (predictions, exports).
        tuning: the :class:`~emkit.tune.heldout.HeldoutTuning` of ``postprocess.tune``,
            or None when the run did not tune.
    """

    run_id: str
    output_dir: Path
    model_path: Path
    steps: int
    metrics: dict
    stopped: str = ""
    resumed: bool = False
    outputs: list = field(default_factory=list)
    tuning: Any = None


def run_folder(recipe: Recipe, output=None) -> Path:
    """``output``, or a new ``<output_root>/<recipe>-<YYYYmmdd-HHMMSS>`` folder name."""
    if output is not None:
        return Path(output)
    return Path(recipe.run.output_root) / f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _claim_folder(folder: Path, *, resume: bool, overwrite: bool, tracker):
    """The state to resume from (or None), after the overwrite rules.

    An unfinished run is resumed, even one killed before its first checkpoint (its
    ``state.json`` is written when it starts). A run that ``overwrite`` replaces while it
    was unfinished has its tracking run ended as KILLED, so that none stays RUNNING.
    """
    from emkit.training import read_state

    state = read_state(folder / "checkpoints")
    if state is not None and (resume if state.finished else not overwrite):
        return state
    if folder.exists() and any(p.is_file() for p in folder.rglob("*")):
        if not overwrite:
            what = "a finished run" if state is not None else "files"
            raise OverwriteError(
                f"output folder {str(folder)!r} holds {what}; pass --overwrite to replace it"
                + (" or --resume to train it further" if state is not None else "")
            )
        if state is not None and not state.finished:
            tracker.end_run(state.run_id, "KILLED")
    if folder.exists():
        shutil.rmtree(folder)
    return None


@dataclass
class OpenRun:
    """A claimed run folder whose tracking run has started (see :func:`open_run`).

    Attributes:
        folder: the run folder.
        state: the run's ``state.json``: the one resumed from (``finished`` reset to
            False), or a new one at step 0.
        tracker: the tracker, its run started.
        run_id: the tracking run.
        resumed: True when the folder held the run already.
    """

    folder: Path
    state: Any
    tracker: Any
    run_id: str
    resumed: bool

    @property
    def checkpoints_dir(self) -> Path:
        return self.folder / "checkpoints"


def open_run(recipe, folder: Path, recipe_text: str, *, params: dict, resume: bool,
             overwrite: bool, tracker=None, parent_run_id: str | None = None) -> OpenRun:
    """Claims ``folder`` (:func:`_claim_folder`), creates ``checkpoints/``, starts the
    tracking run (or continues the resumed one) and writes ``recipe_text`` to
    ``recipe.yaml`` (``recipe-resume-<step>.yaml`` on a resume) as an artifact.

    A new run logs ``params`` and writes its ``state.json`` at once, so that a kill at
    any later point leaves a run that the same command resumes.

    Shared by :func:`run_recipe` and :func:`emkit.align.learned.train_aligner`; ``recipe``
    needs ``tracking.uri`` and ``tracking.experiment``.
    """
    from emkit.tracking import MlflowTracker
    from emkit.training import TrainState, write_state

    if folder.exists() and not folder.is_dir():
        raise InputError(f"output folder {str(folder)!r} is a file; --output takes the run's "
                         "folder (new, or one that holds a run)")
    tracker = tracker or MlflowTracker(recipe.tracking.uri)
    state = _claim_folder(folder, resume=resume, overwrite=overwrite, tracker=tracker)
    resumed = state is not None
    if resumed:
        state.finished = False
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    run_id = tracker.start(experiment=recipe.tracking.experiment, run_name=folder.name,
                           run_id=state.run_id if resumed else None, parent_run_id=parent_run_id)
    if not resumed:
        tracker.log_params(params)
        state = TrainState(run_id=run_id, recipe=recipe.name)
        write_state(folder / "checkpoints", state)
    recipe_file = folder / ("recipe.yaml" if not resumed else f"recipe-resume-{state.step}.yaml")
    recipe_file.write_text(recipe_text)
    tracker.log_artifact(recipe_file)
    return OpenRun(folder, state, tracker, run_id, resumed)


def git_commit() -> str:
    """The git commit of the emkit checkout (``+dirty`` if changed), or ``unknown``."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("+dirty" if dirty else "")) if commit else "unknown"


def run_recipe(recipe: Recipe, *, output=None, resume: bool = False, overwrite: bool = False,
               tracker=None, callbacks=(), verbose: int = 0, parent_run_id: str | None = None,
               on_validation=None) -> RunResult:
    """Trains, validates, evaluates and exports one recipe, tracked as one run.

    Args:
        recipe: a loaded recipe (:func:`emkit.recipes.load_recipe`).
        output: the run folder; default a new one under ``run.output_root``. A folder
            with an unfinished ``state.json`` is resumed.
        resume: also continue a *finished* run (e.g. with a larger ``train.max_steps``).
        overwrite: replace a folder that holds a finished run or other files.
        tracker: a tracker (:mod:`emkit.tracking`); default MLflow at ``tracking.uri``.
        callbacks: extra Keras callbacks (e.g. for tests).
        verbose: Keras' ``fit`` verbosity.
        parent_run_id: start the tracking run as a child of this run (a tuning study's
            trial, an ensemble's member).
        on_validation: ``on_validation(step, metrics)`` after each validation during
            training. An exception it raises stops the run; the tracking run ends with
            the exception's ``run_status`` attribute (e.g. ``"KILLED"`` for a pruned
            trial) or ``"FAILED"``, and the folder stays resumable.

    Returns:
        A :class:`RunResult`.

    Raises:
        OverwriteError: the folder holds a finished run and neither flag was given.
        KeyboardInterrupt: after a last checkpoint is saved; the run is marked KILLED
            and resumes with the same command and ``--output``.
    """
    from emkit.devices import describe as describe_devices
    from emkit.recipes import stages
    from emkit.tracking import ends_run_on_error
    from emkit.training import (
        Budget,
        Checkpoints,
        Clock,
        LayerVisualization,
        LossLogger,
        Validation,
        WeightHistograms,
        fit_steps,
        global_step,
        load_checkpoint,
        save_model_atomic,
        write_state,
    )
    from emkit.training.fit import saved_mixed_precision
    from emkit.tune.postprocess import write_atomic

    folder = run_folder(recipe, output)
    plan = stages.device_plan(recipe)  # devices this machine lacks fail before the run starts
    opened = open_run(recipe, folder, dump_recipe(recipe), params=flatten(recipe_to_dict(recipe)),
                      resume=resume, overwrite=overwrite, tracker=tracker,
                      parent_run_id=parent_run_id)
    state, resumed, tracker, run_id = opened.state, opened.resumed, opened.tracker, opened.run_id
    checkpoints_dir = opened.checkpoints_dir
    with ends_run_on_error(tracker):
        data = stages.prepare_data(recipe)
        if recipe.postprocess.tune and len(data.scored_sections) < 2:
            raise InputError(
                f"postprocess.tune needs at least 2 labelled validation sections (it tunes on "
                f"some and scores the others); {recipe.name} has {len(data.scored_sections)}. "
                "Set postprocess.tune=false or validate on more sections")
        if state.step == 0:
            tracker.set_tags({"emkit.recipe": recipe.name, "emkit.output_dir": str(folder.resolve()),
                              "git_commit": git_commit(),
                              **{f"data.{k}": v for k, v in data.checksums.items()}})
        last = checkpoints_dir / "last.keras"
        if resumed and last.exists():  # a checkpoint keeps the dtype policy it was trained with
            plan = plan.with_mixed_precision(saved_mixed_precision(last))
        tracker.set_tags(describe_devices(plan))  # tags: a resumed run may move to other devices
        model = load_checkpoint(last, plan=plan) if resumed and last.exists() else None
        # the net as built: trained as it is, or the patch classifier of a dense trainer
        net = model if model is not None and recipe.train.mode != "dense" else \
            stages.build_network(recipe, plan)
        export = stages.exporter(recipe, net)  # dense trainer -> patch classifier
        if model is None:
            model = stages.build_trainer(recipe, net, plan) if export.net is not None else net
        sampler = stages.build_sampler(recipe, data, model)
        validate = stages.ValidationPipeline(recipe, data)
        t = recipe.train
        clock = Clock(state.elapsed_minutes)
        checkpoints = Checkpoints(checkpoints_dir, state, t.checkpoint_every, clock,
                                  best_metric=t.best_metric, best_mode=t.best_mode,
                                  export=export)
        budget = Budget(t.max_steps, t.max_minutes, clock)
        validation = Validation(lambda m: validate(plan.inference_model(export(m))), tracker,
                                t.validate_every, checkpoints, on_result=on_validation,
                                clock=clock)
        with plan.run_scope():
            fit_steps(model, sampler, max_steps=t.max_steps, steps_done=state.step,
                      checkpoints=checkpoints, verbose=verbose,
                      callbacks=[
                          # validation before the checkpoint of the same step: a kill
                          # during a validation resumes before it, and it runs again
                          budget, LossLogger(tracker, t.log_every, clock), validation, checkpoints,
                          WeightHistograms(tracker, t.histogram_every),
                          LayerVisualization(tracker, t.visualize_every,
                                             stages.fixed_input(sampler)),
                          *callbacks])
            checkpoints.set_model(model)
            checkpoints.save()
            step = global_step(model)
            if not validation.history or validation.history[-1][0] != step or validate.last is None:
                validation.set_model(model)
                validation.run(step)
        result = validate.last
        if recipe.inference.final_tta and not recipe.inference.tta:
            result = validate.run(plan.inference_model(export(model)), tta=True)
            tracker.log_metrics({f"final_tta_{k}": v for k, v in result.metrics.items()
                                 if isinstance(v, (int, float))}, step=step)
        stages.log_learning_curves(tracker, folder / "learning_curves.png")
        model_path = folder / "model.keras"
        save_model_atomic(export(model), model_path)
        tuning, final = None, result
        if recipe.postprocess.tune:  # the exports and recipe.yaml get the tuned options
            tuning = stages.tune_postprocessing(recipe, data, validate, folder / "tuning",
                                                tracker, step=step)
            recipe = stages.with_options(recipe, tuning.options)
            final = validate.resegment(result, tuning.options)
            write_atomic(folder / "recipe.yaml", dump_recipe(recipe))
            tracker.log_artifact(folder / "recipe.yaml")
        outputs = stages.write_outputs(recipe, data, final, folder / "outputs")
        for path in (model_path, checkpoints_dir, folder / "outputs"):
            tracker.log_artifact(path, None if path.is_file() else path.name)
        state.finished = True
        write_state(checkpoints_dir, state)
        tracker.log_metrics({"steps": step, "train_minutes": state.elapsed_minutes}, step=step)
        tracker.finish("FINISHED")
    return RunResult(run_id, folder, model_path, step, result.metrics,
                     stopped=budget.reason or "", resumed=resumed, outputs=outputs,
                     tuning=tuning)


__all__ = ["OpenRun", "RunResult", "git_commit", "open_run", "run_folder", "run_recipe"]
