"""Training a learned aligner from an align recipe (``task: align``): the aligner's
counterpart of :func:`emkit.recipes.run.run_recipe`, with the same run folder, checkpoints,
exact resume and MLflow run. The aligner itself (pair sampler, model, validation) is
:mod:`emkit.align.learned`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import yaml

from emkit.align.learned import PairSampler, load_training_stack, validation_function
from emkit.align.learned_model import CUSTOM_OBJECTS, build_pair_aligner, compile_pair_aligner
from emkit.recipes.align_schema import align_recipe_to_dict
from emkit.recipes.schema import flatten


def train_aligner(recipe, *, output=None, resume: bool = False, overwrite: bool = False,
                  tracker=None, verbose: int = 0):
    """Trains an align recipe (:mod:`emkit.recipes.align_schema`) with checkpoints and tracking.

    The run folder is laid out as a segmentation run's (``checkpoints/last.keras``,
    ``best.keras``, ``state.json``, ``recipe.yaml``, ``model.keras``, ``overlay.png``); a
    folder with an unfinished ``state.json`` resumes from ``last.keras`` into the same
    tracking run. Params, the loss curve (``train_loss``, every ``train.log_every``
    steps), the validation coordinate error and NCC loss, and an overlay image are logged.

    Returns:
        A :class:`emkit.recipes.run.RunResult`, as a segmentation run's.

    Args:
        recipe: an align recipe (``task: align``).
        output: the run folder; None: a new one under ``run.output_root``.
        resume: also continue a finished run.
        overwrite: start the folder afresh.
        tracker: the tracker; None: MLflow at ``tracking.uri``.
        verbose: Keras' ``fit`` verbosity.
    """
    from emkit.recipes.folder import RunResult, git_commit, open_run, run_folder
    from emkit.tracking import ends_run_on_error
    from emkit.training import (
        Budget,
        Checkpoints,
        Clock,
        LossLogger,
        Validation,
        fit_steps,
        global_step,
        make_optimizer,
        save_model_atomic,
        write_state,
    )

    folder = run_folder(recipe, output)
    recipe_text = yaml.safe_dump(align_recipe_to_dict(recipe), sort_keys=False,
                                 default_flow_style=None)
    opened = open_run(recipe, folder, recipe_text, params=flatten(align_recipe_to_dict(recipe)),
                      resume=resume, overwrite=overwrite, tracker=tracker)
    state, resumed, tracker, run_id = opened.state, opened.resumed, opened.tracker, opened.run_id
    checkpoints_dir = opened.checkpoints_dir
    with ends_run_on_error(tracker):
        stack, checksums = load_training_stack(recipe)
        if state.step == 0:
            tracker.set_tags({"emkit.recipe": recipe.name, "emkit.task": "align",
                              "emkit.output_dir": str(folder.resolve()), "git_commit": git_commit(),
                              **{f"data.{k}": v for k, v in checksums.items()}})
        t, m = recipe.train, recipe.model
        keras.utils.set_random_seed(recipe.run.seed)
        last = checkpoints_dir / "last.keras"
        if resumed and last.exists():
            model = keras.saving.load_model(last, custom_objects=CUSTOM_OBJECTS, compile=True)
        else:
            model = build_pair_aligner(m.transform, filters=m.filters, depth=m.depth,
                                       kernel_size=m.kernel_size)
            compile_pair_aligner(model, mode=recipe.loss.mode, ncc=recipe.loss.ncc,
                                 window=recipe.loss.window,
                                 smoothness_weight=recipe.loss.smoothness,
                                 optimizer=make_optimizer(t.optimizer, t.learning_rate))
        motions = dataclasses.asdict(recipe.motions)
        sampler = PairSampler(stack, crop=recipe.data.crop, motions=motions,
                              batch_size=t.batch_size, steps_per_epoch=t.steps_per_epoch,
                              seed=recipe.run.seed)
        validate = validation_function(stack, crop=recipe.data.crop, motions=motions,
                                       pairs=t.validation_pairs, seed=recipe.run.seed + 1,
                                       kind=m.transform, ncc_kind=recipe.loss.ncc,
                                       window=recipe.loss.window)
        clock = Clock(state.elapsed_minutes)
        checkpoints = Checkpoints(checkpoints_dir, state, t.checkpoint_every, clock,
                                  best_metric="coord_error_px", best_mode="min")
        budget = Budget(t.max_steps, t.max_minutes, clock)
        validation = Validation(validate, tracker, t.validate_every, checkpoints)
        fit_steps(model, sampler, max_steps=t.max_steps, steps_done=state.step,
                  checkpoints=checkpoints, verbose=verbose,
                  callbacks=[budget, LossLogger(tracker, t.log_every, clock), validation,
                             checkpoints])
        checkpoints.set_model(model)
        checkpoints.save()
        step = global_step(model)
        validation.set_model(model)
        metrics = validation.run(step)
        model_path = folder / "model.keras"
        save_model_atomic(model, model_path)
        _, images = validate(model)
        overlay_path = folder / "overlay.png"
        _write_png(overlay_path, images["overlay"])
        for path in (model_path, overlay_path, checkpoints_dir):
            tracker.log_artifact(path, None if path.is_file() else path.name)
        state.finished = True
        write_state(checkpoints_dir, state)
        tracker.log_metrics({"steps": step, "train_minutes": state.elapsed_minutes}, step=step)
        tracker.finish("FINISHED")
    return RunResult(run_id, folder, model_path, step, metrics,
                     stopped=budget.reason or "", resumed=resumed)


def _write_png(path, image):
    """An RGB image to ``path``, atomically."""
    from PIL import Image

    from emkit.io._common import atomic_path

    with atomic_path(Path(path)) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


__all__ = ["train_aligner"]
