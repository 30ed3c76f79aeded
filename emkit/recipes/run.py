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
    outputs/                 validation.h5 (raw, pred, seg) and the challenge exports

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

from emkit.errors import InputError
from emkit.recipes import Recipe, dump_recipe, flatten, recipe_to_dict
from emkit.recipes.folder import RunResult, git_commit, open_run, run_folder


def run_recipe(recipe: Recipe, *, output=None, resume: bool = False, overwrite: bool = False,
               tracker=None, callbacks=(), verbose: int = 0, parent_run_id: str | None = None,
               on_validation=None) -> RunResult:
    """Trains, validates, evaluates and exports one recipe, tracked as one run.

    An align recipe (``task: align``, as :func:`emkit.recipes.load_recipe` reads it) trains
    its aligner instead (:func:`emkit.recipes.align_run.train_aligner`).

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
    if getattr(recipe, "task", None) == "align":  # an aligner (emkit.recipes.align_schema)
        from emkit.recipes.align_run import train_aligner

        return train_aligner(recipe, output=output, resume=resume, overwrite=overwrite,
                             tracker=tracker, verbose=verbose)
    from emkit import training
    from emkit.io import write_text
    from emkit.recipes import build
    from emkit.tracking import ends_run_on_error
    from emkit.training.devices import describe as describe_devices
    from emkit.training.fit import saved_mixed_precision

    folder = run_folder(recipe, output)
    plan = build.device_plan(recipe)  # devices this machine lacks fail before the run starts
    opened = open_run(recipe, folder, dump_recipe(recipe), params=flatten(recipe_to_dict(recipe)),
                      resume=resume, overwrite=overwrite, tracker=tracker,
                      parent_run_id=parent_run_id)
    state, resumed, tracker, run_id = opened.state, opened.resumed, opened.tracker, opened.run_id
    checkpoints_dir = opened.checkpoints_dir
    with ends_run_on_error(tracker):
        data = build.prepare_data(recipe)
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
        model = training.load_checkpoint(last, plan=plan) if resumed and last.exists() else None
        # the net as built: trained as it is, or the patch classifier of a dense trainer
        net = model if model is not None and recipe.train.mode != "dense" else \
            build.build_network(recipe, plan)
        export = build.exporter(recipe, net)  # dense trainer -> patch classifier
        if model is None:
            model = build.build_trainer(recipe, net, plan) if export.net is not None else net
        sampler = build.make_sampler(recipe, data, model)
        validate = build.ValidationPipeline(recipe, data)
        t = recipe.train
        clock = training.Clock(state.elapsed_minutes)
        checkpoints = training.Checkpoints(checkpoints_dir, state, t.checkpoint_every, clock,
                                           best_metric=t.best_metric, best_mode=t.best_mode,
                                           export=export)
        budget = training.Budget(t.max_steps, t.max_minutes, clock)
        validation = training.Validation(
            lambda m: validate(plan.inference_model(export(m))), tracker, t.validate_every,
            checkpoints, on_result=on_validation, clock=clock)
        with plan.run_scope():
            training.fit_steps(
                model, sampler, max_steps=t.max_steps, steps_done=state.step,
                checkpoints=checkpoints, verbose=verbose,
                callbacks=[
                    # validation before the checkpoint of the same step: a kill
                    # during a validation resumes before it, and it runs again
                    budget, training.LossLogger(tracker, t.log_every, clock), validation,
                    checkpoints, training.WeightHistograms(tracker, t.histogram_every),
                    training.LayerVisualization(tracker, t.visualize_every,
                                                build.fixed_input(sampler)),
                    *callbacks])
            checkpoints.set_model(model)
            checkpoints.save()
            step = training.global_step(model)
            if not validation.history or validation.history[-1][0] != step or validate.last is None:
                validation.set_model(model)
                validation.run(step)
        result = validate.last
        if recipe.inference.final_tta and not recipe.inference.tta:
            result = validate.run(plan.inference_model(export(model)), tta=True)
            tracker.log_metrics({f"final_tta_{k}": v for k, v in result.metrics.items()
                                 if isinstance(v, (int, float))}, step=step)
        build.log_learning_curves(tracker, folder / "learning_curves.png")
        model_path = folder / "model.keras"
        training.save_model_atomic(export(model), model_path)
        tuning, final = None, result
        if recipe.postprocess.tune:  # the exports and recipe.yaml get the tuned options
            tuning = build.tune_postprocessing(recipe, data, validate, folder / "tuning",
                                                tracker, step=step)
            recipe = build.with_options(recipe, tuning.options)
            final = validate.resegment(result, tuning.options)
            write_text(folder / "recipe.yaml", dump_recipe(recipe))
            tracker.log_artifact(folder / "recipe.yaml")
        outputs = build.write_outputs(recipe, data, final, folder / "outputs")
        for path in (model_path, checkpoints_dir, folder / "outputs"):
            tracker.log_artifact(path, None if path.is_file() else path.name)
        state.finished = True
        training.write_state(checkpoints_dir, state)
        tracker.log_metrics({"steps": step, "train_minutes": state.elapsed_minutes}, step=step)
        tracker.finish("FINISHED")
    return RunResult(run_id, folder, model_path, step, result.metrics,
                     stopped=budget.reason or "", resumed=resumed, outputs=outputs,
                     tuning=tuning)


__all__ = ["RunResult", "run_recipe"]
