"""Each pipeline stage built from its recipe section; plain functions and small dataclasses.

The orchestration (:func:`emkit.recipes.run.run_recipe`) calls these in order:
:func:`prepare_data` -> :func:`build_network` -> :func:`make_sampler` -> training ->
:class:`ValidationPipeline` (predict, segment, evaluate) -> :func:`write_outputs`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emkit.errors import InputError
from emkit.postprocess import postprocess_function
from emkit.preprocess import preprocess
from emkit.recipes.loading import model_overrides
from emkit.recipes.schema import Recipe

# --------------------------------------------------------------------------- data


@dataclass
class PreparedData:
    """The data a run works on.

    Attributes:
        dataset: the data set, its ``raw`` preprocessed and in memory.
        train_sections: the sections (z) the sampler draws from.
        validation_sections: the sections predicted, segmented and scored.
        scored_sections: indices into ``validation_sections`` that have labels.
        checksums: ``{"raw_sha256": ..., "labels_sha256": ...}`` of the data as read.
    """

    dataset: object
    train_sections: tuple[int, ...]
    validation_sections: tuple[int, ...]
    scored_sections: tuple[int, ...]
    checksums: dict


def _sha256(array) -> str | None:
    if array is None:
        return None
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def prepare_data(recipe: Recipe) -> PreparedData:
    """Loads the data set, preprocesses it and splits it by sections."""
    from emkit.datasets import load_dataset, split_sections

    cfg = recipe.data
    dataset = load_dataset(cfg.name, root=cfg.root, **cfg.options)
    raw = np.asarray(dataset.raw)
    labels = None if dataset.labels is None else np.asarray(dataset.labels)
    if labels is None:
        raise InputError(f"data.name: {cfg.name} has no labels to train on")
    checksums = {"raw_sha256": _sha256(raw), "labels_sha256": _sha256(labels)}
    mask = None if dataset.mask is None else np.asarray(dataset.mask)
    if cfg.crop is not None:
        if len(cfg.crop) != 2 or min(cfg.crop) < 1:
            raise InputError(f"data.crop: expected [y, x] sizes >= 1, got {cfg.crop}")
        box = (slice(None), slice(0, cfg.crop[0]), slice(0, cfg.crop[1]))
        raw, labels = raw[box], labels[box]
        mask = None if mask is None else mask[box]
    p = recipe.preprocess
    raw = preprocess(raw, method=p.method, sigma=p.sigma, clip_sigma=p.clip_sigma)
    dataset = dataclasses.replace(dataset, raw=raw, labels=labels, mask=mask)
    if cfg.validation_sections == []:  # nothing held back: validate on the whole volume
        train = tuple(range(dataset.num_sections))
        validation = train
    else:
        split = split_sections(dataset, validation=cfg.validation_sections)
        train, validation = split.train, split.validation
    if recipe.evaluation.max_sections is not None:
        validation = _limit(validation, recipe.evaluation.max_sections, dataset.labelled_sections)
    labelled = dataset.labelled_sections
    scored = tuple(i for i, z in enumerate(validation) if labelled is None or z in labelled)
    if not scored:
        raise InputError(f"data.validation_sections: none of {validation} is labelled")
    return PreparedData(dataset, tuple(train), tuple(validation), scored, checksums)


def _limit(validation, n, labelled):
    """The first ``n`` validation sections, moved to keep one labelled section if any."""
    if len(validation) <= n:
        return tuple(validation)
    if labelled:
        first = next((i for i, z in enumerate(validation) if z in labelled), 0)
        start = min(max(0, first - n // 2), len(validation) - n)
        return tuple(validation[start:start + n])
    return tuple(validation[:n])


# --------------------------------------------------------------------------- model, sampler


def device_plan(recipe: Recipe):
    """The :class:`~emkit.training.devices.DevicePlan` of ``train.devices``, ``train.mixed_precision``
    and the global ``sampler.batch_size``."""
    from emkit.training.devices import plan_devices

    return plan_devices(recipe.train.devices, batch_size=recipe.sampler.batch_size,
                        mixed_precision=recipe.train.mixed_precision)


def build_network(recipe: Recipe, plan=None):
    """The recipe's model, built with the run's seed, and compiled.

    The model is built under ``plan``'s dtype policy (``train.mixed_precision``) and in
    its model scope, so that its variables live on the devices that train it.

    Args:
        recipe: the recipe.
        plan: a :class:`~emkit.training.devices.DevicePlan`; None: :func:`device_plan` of the recipe.
    """
    from emkit.training.devices import precision

    plan = plan if plan is not None else device_plan(recipe)
    with precision(plan.mixed_precision), plan.model_scope():
        return _build_and_compile(recipe)


def _build_and_compile(recipe: Recipe):
    import keras

    from emkit.models import build_model, get_spec
    from emkit.training import compile_model

    keras.utils.set_random_seed(recipe.run.seed)
    spec = get_spec(recipe.model.architecture, **model_overrides(recipe))
    model = build_model(spec)
    if recipe.model.align is not None:  # the end-to-end setting: a learned aligner in front
        from emkit.models.align_spec import check_alignable, dict_to_align_spec
        from emkit.models.aligned import build_aligned

        align = dict_to_align_spec(recipe.model.align, key="model.align")
        check_alignable(spec, align)
        model = build_aligned(model, align)
    t = recipe.train
    return compile_model(model, optimizer=t.optimizer, learning_rate=t.learning_rate,
                         momentum=t.momentum)


def exporter(recipe: Recipe, net):
    """The :class:`~emkit.training.dense.Exporter` of a run: ``Exporter(net)`` when
    ``train.mode`` is ``dense`` and ``net`` is a pooled patch classifier (it then trains
    in its dense form), else ``Exporter(None)`` (the net trains as it is built).

    Args:
        recipe: the loaded recipe (``train.mode`` says whether a dense trainer is built).
        net: the network as built (the patch classifier of a pooled net).
    """
    from emkit.models import model_geometry
    from emkit.training.dense import Exporter

    if recipe.train.mode != "dense":
        return Exporter(None)
    geometry = model_geometry(net)
    return Exporter(net if max(geometry.output_stride) > 1 else None)


def build_trainer(recipe: Recipe, net, plan=None):
    """The compiled dense form of the patch classifier ``net`` with the output patch
    ``train.dense_output`` (see :mod:`emkit.training.dense`).

    Args:
        recipe: the loaded recipe (``train.dense_output``).
        net: the patch classifier whose dense form is trained.
        plan: the device plan (its model scope); None: the current scope.
    """
    from emkit.training import compile_model
    from emkit.training.dense import dense_trainer
    from emkit.training.devices import precision

    plan = plan if plan is not None else device_plan(recipe)
    t = recipe.train
    with precision(plan.mixed_precision), plan.model_scope():
        trainer = dense_trainer(net, t.dense_output)
        return compile_model(trainer, optimizer=t.optimizer, learning_rate=t.learning_rate,
                             momentum=t.momentum)


def make_sampler(recipe: Recipe, data: PreparedData, model, *, epoch: int = 0):
    """The training :class:`~emkit.sampling.PatchSampler` over the training sections.

    Raises:
        InputError: a pooled network (output stride > 1, e.g. N4) built with an output
            of more than one voxel: its output voxels are ``stride`` input voxels apart,
            while the sampler cuts adjacent target voxels. Train such nets at their
            field of view (one output voxel) and predict with their dense form.

    Args:
        recipe: the loaded recipe (its ``sampler`` and ``run.seed``).
        data: the prepared data (training sections).
        model: the model that trains on the batches (its windows set the shapes).
        epoch: the sampler's first epoch (``fit_steps`` sets it again on resume).
    """
    from emkit.models import model_geometry
    from emkit.sampling import PatchSampler

    geometry = model_geometry(model)
    if any(st > 1 and o > 1 for st, o in zip(geometry.output_stride, geometry.output_shape)):
        raise InputError(
            f"model {model.name!r} has output stride {geometry.output_stride} and output "
            f"{geometry.output_shape} for input {geometry.input_shape}: a pooled network "
            "trains at its field of view (model.overrides.input_shape = the FOV, one output "
            "voxel); the predictor applies its dense form"
        )
    s = recipe.sampler
    offsets = None if s.offsets is None else tuple(tuple(o) for o in s.offsets)
    return PatchSampler.from_dataset(
        data.dataset, model, sections=data.train_sections, target=s.target, offsets=offsets,
        thickness=s.thickness, augment=s.augment, max_defects=s.max_defects, balance=s.balance,
        batch_size=s.batch_size, batches_per_epoch=recipe.train.steps_per_epoch,
        seed=recipe.run.seed, epoch=epoch, workers=s.workers, max_queue_size=s.max_queue_size,
    )


def fixed_input(sampler) -> np.ndarray:
    """One un-augmented input batch of shape (1, ...) for the feature-map images."""
    sample = sampler.sample(0, 0, epoch=0, augment=False)
    raw = sample.raw[0] if sampler.shapes.ndim == 2 else sample.raw
    return raw[None, ..., None].astype(np.float32)


# --------------------------------------------------------------------------- validation


@dataclass
class ValidationResult:
    """One pass of the pipeline over the validation sections.

    Attributes:
        pred: ndarray of shape (Z, Y, X, C), float32, the network's output.
        seg: ndarray of shape (Z, Y, X), uint64, the segmentation.
        metrics: :func:`emkit.metrics.evaluate`'s dict (``pixel_error`` from the
            boundary map, the rest from the segmentation).
    """

    pred: np.ndarray
    seg: np.ndarray
    metrics: dict


def inference_options(recipe, *, tta: bool | None = None) -> dict:
    """The :func:`~emkit.inference.predict_volume` options of a recipe's ``inference`` section.

    Test-time augmentation of affinities needs the offsets: the sampler's, or the three
    nearest-neighbour ones when the recipe leaves them to the default.

    Args:
        recipe: the recipe.
        tta: test-time augmentation; None: ``inference.tta``.
    """
    i = recipe.inference
    tta = i.tta if tta is None else bool(tta)
    offsets = recipe.sampler.offsets
    if recipe.sampler.target == "affinities" and offsets is None:
        offsets = [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    return {
        "tile_shape": None if i.tile_shape is None else tuple(i.tile_shape),
        "overlap": i.overlap, "blend": i.blend, "batch_size": i.batch_size, "tta": tta,
        "offsets": [tuple(o) for o in offsets] if (tta and offsets) else None,
    }


class ValidationPipeline:
    """Predict, segment and evaluate the validation sections; keeps the last result.

    Called as ``validate(model) -> (metrics, images)`` by the
    :class:`~emkit.training.Validation` callback.
    """

    def __init__(self, recipe: Recipe, data: PreparedData):
        self.recipe, self.data = recipe, data
        dataset = data.dataset
        sections = list(data.validation_sections)
        self.raw = dataset.raw[sections]
        self.labels = dataset.labels[sections]
        self.last: ValidationResult | None = None

    def predict(self, model, *, tta: bool | None = None) -> np.ndarray:
        """The prediction of the validation sections (``tta``: see :func:`inference_options`).

        Args:
            model: the model to predict with (the patch classifier).
            tta: average flips and transposes; None: ``inference.tta``.
        """
        from emkit.inference import predict_volume

        return predict_volume(model, self.raw, **inference_options(self.recipe, tta=tta),
                              progress=False)

    def segment(self, pred: np.ndarray, options: dict | None = None) -> np.ndarray:
        """The segmentation of ``pred`` with ``options`` (default the recipe's).

        Args:
            pred: the validation prediction, channels last.
            options: the postprocessing options; None: the recipe's.
        """
        p = self.recipe.postprocess
        options = dict(p.options if options is None else options)
        function = postprocess_function(p.method)
        if p.method == "watershed_2d":
            return function(pred[..., 0], **options)
        thresholds = options.pop("thresholds", [0.5])
        offsets = self.recipe.sampler.offsets
        if offsets is not None:
            options.setdefault("offsets", [tuple(o) for o in offsets])
        return function(pred, thresholds=thresholds[:1], **options)[0]

    def evaluate(self, pred: np.ndarray, seg: np.ndarray) -> dict:
        """The recipe's metrics of ``pred`` and ``seg`` on the labelled validation sections.

        Args:
            pred: the validation prediction, channels last.
            seg: its segmentation.
        """
        from emkit.metrics import evaluate

        scored = list(self.data.scored_sections)
        gt = self.labels[scored]
        voxel_size = self.data.dataset.voxel_size_nm
        metrics = evaluate(seg[scored], gt, pred_kind="segmentation", voxel_size_nm=voxel_size)
        if self.recipe.sampler.target == "boundaries":
            # The boundary map itself gives the pixel error and the ISBI 2012 leaderboard
            # scores (V_rand, V_info: border thinning, best over thresholds); the rand_*
            # scores stay those of the postprocessed segmentation (Table 3.1).
            scores = evaluate(pred[scored, ..., 0], gt, pred_kind="boundaries",
                              metrics=("pixel_error", "v_rand", "v_info"),
                              threshold=self.recipe.evaluation.threshold)
            for key in ("pixel_error", "v_rand", "v_info"):
                metrics[key] = scores[key]
        return metrics

    def resegment(self, result: ValidationResult, options: dict) -> ValidationResult:
        """``result``'s prediction segmented and scored again with other options.

        Args:
            result: an earlier result (its prediction is kept).
            options: the postprocessing options to segment with.
        """
        seg = self.segment(result.pred, options)
        return ValidationResult(result.pred, seg, self.evaluate(result.pred, seg))

    def run(self, model, *, tta: bool | None = None) -> ValidationResult:
        """Predict, segment and evaluate; the result is also kept as ``last``.

        Args:
            model: the model to predict with.
            tta: average flips and transposes; None: ``inference.tta``.
        """
        pred = self.predict(model, tta=tta)
        seg = self.segment(pred)
        self.last = ValidationResult(pred, seg, self.evaluate(pred, seg))
        return self.last

    def __call__(self, model):
        from emkit.metrics import METRICS
        from emkit.training.plots import overlay

        result = self.run(model)
        z = self.data.scored_sections[len(self.data.scored_sections) // 2]
        pred = result.pred[z]
        boundaries = pred[..., 0] if pred.shape[-1] == 1 else 1 - pred[..., :3].mean(axis=-1)
        image = overlay(self.raw[z], boundaries, result.seg[z])
        metrics = {k: result.metrics.get(k) for k in METRICS}
        return metrics, {"overlay": image}


def log_learning_curves(tracker, path, keys=("pixel_error", "v_rand", "rand_error",
                                              "adapted_rand_error")) -> None:
    """Plots the validation metrics against training minutes (from the tracker's history,
    so a resumed run's curve is whole) into ``path`` and logs it as an artifact.

    Args:
        tracker: the run's tracker (its metric history is read).
        path: the PNG to write, then logged as an artifact.
        keys: the validation metrics to draw.
    """
    from emkit.io._common import atomic_path
    from emkit.training.plots import learning_curves

    history = getattr(tracker, "metric_history", None)
    if history is None:
        return
    minutes = dict(history("val_train_minutes"))
    curves = {}
    for key in keys:
        points = [(minutes[s], v) for s, v in dict(history(f"val_{key}")).items() if s in minutes]
        if points:
            curves[f"validation {key}"] = points
    if not curves:
        return
    from PIL import Image

    with atomic_path(Path(path)) as tmp:
        Image.fromarray(learning_curves(curves)).save(tmp, format="PNG")
    tracker.log_artifact(path)


# --------------------------------------------------------------------------- tuning


def with_options(recipe: Recipe, options: dict) -> Recipe:
    """``recipe`` with ``postprocess.options`` replaced.

    Args:
        recipe: the loaded recipe.
        options: the new ``postprocess.options``.
    """
    return dataclasses.replace(
        recipe, postprocess=dataclasses.replace(recipe.postprocess, options=dict(options)))


def tune_postprocessing(recipe: Recipe, data: PreparedData, validate: ValidationPipeline,
                        folder, tracker, *, step: int):
    """Tunes the postprocessing on the last validation prediction (:mod:`emkit.tune.heldout`)
    and logs it: the held-out scores before and after (``tune_before_*``,
    ``tune_after_*``), the in-sample best, the tuned options as a tag, and the study's
    plots and a ``heldout.json`` under the run's ``tuning/`` artifacts.

    The studies live in ``folder/optuna.db``, named by step and prediction, so a run
    killed while tuning resumes them.

    Args:
        recipe: the recipe (its ``postprocess`` and ``sampler.offsets``, ``run.seed``).
        data: the :class:`PreparedData` (validation and scored sections, voxel size).
        validate: the :class:`ValidationPipeline` after a validation: its ``last.pred``
            is tuned on, against its ``labels``.
        folder: the folder for ``optuna.db``, ``heldout.json`` and ``plots/``.
        tracker: the run's tracker.
        step: the training step the metrics are logged at.

    Returns:
        The :class:`~emkit.tune.heldout.HeldoutTuning`.
    """
    import json

    from emkit.io import write_text
    from emkit.tune.heldout import tune_heldout
    from emkit.tune.postprocess import options_override
    from emkit.tune.study import study_plots

    p = recipe.postprocess
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pred = validate.last.pred
    offsets = recipe.sampler.offsets
    digest = hashlib.sha256(np.ascontiguousarray(pred).tobytes()).hexdigest()[:8]
    tuning = tune_heldout(
        pred, validate.labels, method=p.method, scored_sections=data.scored_sections,
        base_options=p.options, n_trials=p.tune_trials, metric=p.tune_metric,
        voxel_size_nm=data.dataset.voxel_size_nm,
        offsets=None if offsets is None else [tuple(o) for o in offsets],
        storage=f"sqlite:///{(folder / 'optuna.db').resolve()}",
        study_prefix=f"step{step}-{digest}", seed=recipe.run.seed)
    m = tuning.metric
    metrics = {f"tune_in_sample_{m}": tuning.in_sample,
               "tune_kept_recipe_options": float(tuning.kept_recipe_options)}
    for when, scores in (("before", tuning.before), ("after", tuning.after)):
        metrics.update({f"tune_{when}_{k}": v for k, v in scores.items()})
    tracker.log_metrics(metrics, step=step)
    tracker.set_tags({"emkit.tuned_postprocess": options_override(tuning.options)})
    study_plots(tuning.study.study, folder / "plots", target_name=m.replace("_", " "))
    summary = {
        "metric": m, "direction": tuning.direction, "options": tuning.options,
        "kept_recipe_options": tuning.kept_recipe_options,
        "tuned_on_all_sections": tuning.tuned_options,
        "before_heldout": tuning.before, "after_heldout": tuning.after,
        "in_sample_best": tuning.in_sample,
        "validation_sections": list(data.validation_sections),
        "folds": [{"tuned_on": [data.validation_sections[i] for i in f.tuned_on],
                   "scored_on": [data.validation_sections[i] for i in f.scored_on],
                   "options": f.options, "before": f.before, "after": f.after}
                  for f in tuning.folds],
    }
    write_text(folder / "heldout.json", json.dumps(summary, indent=2, default=float))
    for path in (folder / "plots", folder / "heldout.json"):
        if path.exists():
            tracker.log_artifact(path, "tuning" if path.is_file() else "tuning/plots")
    return tuning


# --------------------------------------------------------------------------- outputs


def write_outputs(recipe: Recipe, data: PreparedData, result: ValidationResult, folder) -> list[Path]:
    """Writes the prediction, the segmentation and the challenge exports into ``folder``.

    ``validation.h5`` holds ``raw`` (the validation sections as the net saw them,
    preprocessed), ``pred`` and ``seg``, for ``emkit view`` to show side by side.

    Returns:
        The paths written.

    Args:
        recipe: the loaded recipe (its ``export`` list).
        data: the prepared data (voxel size, sections).
        result: the final validation result.
        folder: the run's ``outputs/`` folder.
    """
    from emkit import export
    from emkit.io import write_volume

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    voxel_size = data.dataset.voxel_size_nm
    written = []
    if recipe.export.predictions:
        path = folder / "validation.h5"
        pred = np.moveaxis(result.pred, -1, 0)  # channels first on disk
        pred = pred[0] if pred.shape[0] == 1 else pred
        write_volume(f"{path}:pred", pred, voxel_size_nm=voxel_size if pred.ndim == 3 else None,
                     overwrite=True)
        write_volume(f"{path}:seg", result.seg, voxel_size_nm=voxel_size, overwrite=True)
        raw = np.asarray(data.dataset.raw[list(data.validation_sections)], np.float32)
        write_volume(f"{path}:raw", raw, voxel_size_nm=voxel_size, overwrite=True)
        written.append(path)
    for fmt in recipe.export.formats:
        if fmt == "isbi2012":
            boundaries = result.pred[..., 0] if result.pred.shape[-1] == 1 else \
                1 - result.pred[..., :3].mean(axis=-1)
            path = export.export_isbi2012(folder / "isbi2012.tif", boundaries, overwrite=True)
        elif fmt == "snemi3d":
            path = export.export_snemi3d(folder / "snemi3d.tif", result.seg, overwrite=True)
        else:
            path = export.export_cremi(folder / "cremi.hdf", result.seg, overwrite=True,
                                       voxel_size_nm=voxel_size or export.CREMI_RESOLUTION_NM)
        written.append(Path(path) if path is not None else folder)
    return written


__all__ = [
    "PreparedData",
    "ValidationPipeline",
    "ValidationResult",
    "build_network",
    "build_trainer",
    "device_plan",
    "exporter",
    "fixed_input",
    "log_learning_curves",
    "make_sampler",
    "prepare_data",
    "preprocess",
    "tune_postprocessing",
    "with_options",
    "write_outputs",
]
