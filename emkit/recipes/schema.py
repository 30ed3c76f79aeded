"""The recipe schema: one typed dataclass per pipeline section, and strict checking.

A recipe is one YAML mapping with a section per stage of the pipeline (DeepSeg thesis,
section 2.2: one specification of the whole pipeline). Every key has a typed default
here; a recipe file states what it changes. Unknown keys and wrong types are errors
that name the key (``train.max_steps: expected int, got 'ten'``).

Sections: ``data``, ``preprocess``, ``model``, ``sampler``, ``train``, ``inference``,
``postprocess``, ``evaluation``, ``export``, ``tracking``, ``run``.

This module imports no Keras, so ``emkit recipe list`` and ``show`` start fast.

>>> recipe = dict_to_recipe({"model": {"architecture": "n4"}, "train": {"max_steps": 5}})
>>> recipe.train.max_steps, recipe.data.name
(5, 'isbi2012')
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

from emkit.errors import InputError


@dataclass
class DataConfig:
    """Which data set, and which sections validate.

    Attributes:
        name: a key of ``emkit.datasets.DATASETS``.
        root: the data root (None: ``$EMKIT_DATA``, then ``~/.cache/emkit/data``).
        options: keyword arguments of the data set's loader (e.g. ``{sample: B}``).
        validation_sections: the held-back sections (z); None: the data set's default;
            ``[]``: none held back (validate on the training volume, e.g. sparse labels).
        crop: ``[y, x]``: use only the first y rows and x columns of every section
            (quick runs, tests); None: whole sections.
    """

    name: str = "isbi2012"
    root: str | None = None
    options: dict = field(default_factory=dict)
    validation_sections: list[int] | None = None
    crop: list[int] | None = None


@dataclass
class PreprocessConfig:
    """Intensity preprocessing before sampling and prediction.

    Attributes:
        method: ``"none"`` (uint8 / 255), ``"standardize"`` (per section, zero mean and
            unit variance) or ``"whiten"`` (per section, minus a Gaussian local mean,
            divided by the local standard deviation). Both then map +-``clip_sigma``
            to [0, 1].
        sigma: the local window of ``"whiten"``, pixels.
        clip_sigma: standard deviations mapped to the ends of [0, 1].
    """

    method: str = "none"
    sigma: float = 16.0
    clip_sigma: float = 3.0


@dataclass
class ModelConfig:
    """The network: a registered architecture and spec keys to change.

    Attributes:
        architecture: a key of ``emkit.models.ARCHITECTURES``.
        overrides: spec keys, e.g. ``{width_factor: 0.5, input_shape: [95, 95]}``.
        align: a learned aligner in front of a 3D network, trained jointly (the thesis's
            end-to-end setting), e.g. ``{transform: affine, filters: 8, depth: 3,
            reference: center, ncc_weight: 0.1}`` (see ``emkit.models.align_spec.AlignSpec``);
            null: none.
    """

    architecture: str = "n4"
    overrides: dict = field(default_factory=dict)
    align: dict | None = None


@dataclass
class SamplerConfig:
    """Training patches (see :class:`emkit.sampling.PatchSampler`); shapes come from the model.

    Attributes:
        target: ``"boundaries"`` or ``"affinities"``.
        offsets: affinity offsets ``[[dz, dy, dx], ...]``; None: nearest neighbours.
        thickness: boundary half-width for segmentation labels.
        balance: weight boundary and interior to contribute equally.
        batch_size: samples per batch.
        augment: augmentation entries, in order (``{name: flip}``, ...).
        max_defects: at most this many EM defects per sample, or None.
        workers: sampler threads.
        max_queue_size: batches prepared ahead.
    """

    target: str = "boundaries"
    offsets: list[list[int]] | None = None
    thickness: int = 1
    balance: bool = False
    batch_size: int = 16
    augment: list[dict] = field(default_factory=list)
    max_defects: int | None = None
    workers: int = 1
    max_queue_size: int = 10


@dataclass
class TrainConfig:
    """Optimisation and the training hooks (thesis section 2.6.2). Steps are optimizer steps.

    Attributes:
        optimizer: ``"adam"`` or ``"sgd"``.
        learning_rate: the step size.
        momentum: SGD momentum (ignored by Adam).
        max_steps: stop after this many steps in all (resumes count).
        max_minutes: stop after this many minutes of training in all, or None.
        steps_per_epoch: batches per Keras epoch (the sampler's epoch length).
        log_every: log the training loss every N steps.
        validate_every: run the validation pipeline every N steps (0: only at the end).
        checkpoint_every: save ``last.keras`` and ``state.json`` every N steps.
        histogram_every: plot weight histograms every N steps (0: never).
        visualize_every: plot feature maps of a fixed sample every N steps (0: never).
        best_metric: the validation metric that picks ``best.keras``.
        best_mode: ``"max"`` or ``"min"``: whether larger ``best_metric`` is better.
        mixed_precision: ``"none"`` (float32), ``"bfloat16"`` or ``"float16"`` (with
            dynamic loss scaling): the Keras dtype policy the model is built with; outputs,
            losses and weights stay float32 (see :mod:`emkit.training.devices`).
        devices: ``"auto"`` (every GPU, data parallel when there are several), ``"cpu"``,
            or a number of devices; ``sampler.batch_size`` is the global batch, split
            evenly over them.
        mode: ``"patch"`` (a pooled net such as N4 learns one output voxel per
            field-of-view window) or ``"dense"`` (its dense form learns an output patch
            of ``dense_output`` voxels at stride 1; the same network is saved, see
            :mod:`emkit.training.dense`). Nets without pooling always train densely.
        dense_output: the output patch of ``mode: dense``, ``[y, x]`` or ``[z, y, x]``.
    """

    optimizer: str = "adam"
    learning_rate: float = 1e-4
    momentum: float = 0.9
    max_steps: int = 10000
    max_minutes: float | None = None
    steps_per_epoch: int = 100
    log_every: int = 10
    validate_every: int = 1000
    checkpoint_every: int = 500
    histogram_every: int = 1000
    visualize_every: int = 1000
    best_metric: str = "rand_error"
    best_mode: str = "max"
    mixed_precision: str = "none"
    devices: int | str = "auto"
    mode: str = "patch"
    dense_output: list[int] = field(default_factory=lambda: [32, 32])


@dataclass
class InferenceConfig:
    """Tiled prediction (see :func:`emkit.inference.predict_volume`).

    Attributes:
        tile_shape: output tile ``[y, x]`` or ``[z, y, x]``; None: chosen from the model.
        overlap: output voxels shared by neighbouring tiles; None: the default.
        blend: ``"bump"``, ``"gaussian"`` or ``"valid"``.
        batch_size: tiles per forward pass.
        tta: average flips and transposes.
        final_tta: the run's final prediction (the one tuned, scored and exported) with
            test-time augmentation, while the validations during training stay plain
            and cheap.
    """

    tile_shape: list[int] | None = None
    overlap: int | None = None
    blend: str = "bump"
    batch_size: int = 4
    tta: bool = False
    final_tta: bool = False


@dataclass
class PostprocessConfig:
    """From prediction to segmentation.

    Attributes:
        method: ``"watershed_2d"`` (boundary maps, per section) or ``"affinity_watershed"``
            (affinities: 3D watershed, then mean-affinity agglomeration).
        options: keyword arguments of :func:`emkit.postprocess.watershed_2d` or
            :func:`emkit.postprocess.segment_affinities` (e.g. ``{thresholds: [0.5]}``).
        tune: after training, tune ``options`` with Optuna on the validation sections
            (:mod:`emkit.tune.heldout`): the reported score comes from sections each
            tuner did not see, and the final segmentation, the exports and the run's
            ``recipe.yaml`` use the options tuned on all of them.
        tune_trials: Optuna trials per study (each segments and scores once).
        tune_metric: the metric tuned, a key of ``emkit.tune.postprocess.OBJECTIVES``;
            None: ``rand_error`` (Rand F-score) for boundaries, ``adapted_rand_error``
            for affinities.
    """

    method: str = "watershed_2d"
    options: dict = field(default_factory=dict)
    tune: bool = True
    tune_trials: int = 40
    tune_metric: str | None = None


@dataclass
class EvaluationConfig:
    """Scoring the validation sections (see :func:`emkit.metrics.evaluate`).

    Attributes:
        max_sections: score at most the first N validation sections (None: all).
        threshold: boundary threshold of ``pixel_error``.
    """

    max_sections: int | None = None
    threshold: float = 0.5


@dataclass
class ExportConfig:
    """What the run writes into its output folder.

    Attributes:
        formats: challenge formats for the validation result: ``isbi2012``,
            ``snemi3d``, ``cremi``.
        predictions: also write the prediction and segmentation volumes (HDF5).
    """

    formats: list[str] = field(default_factory=list)
    predictions: bool = True


@dataclass
class TrackingConfig:
    """MLflow tracking.

    Attributes:
        uri: a tracking URI; None: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns/mlflow.db``.
        experiment: the MLflow experiment; runs that should be compared share one.
    """

    uri: str | None = None
    experiment: str = "emkit"


@dataclass
class RunConfig:
    """The run itself.

    Attributes:
        output_root: run folders go to ``<output_root>/<recipe>-<timestamp>/``.
        seed: the seed of sampling and weight initialisation.
    """

    output_root: str = "runs"
    seed: int = 0


@dataclass
class Recipe:
    """A whole pipeline: one attribute per section, plus the recipe's name."""

    name: str = "recipe"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    run: RunConfig = field(default_factory=RunConfig)


SECTIONS: dict[str, type] = {
    f.name: f.default_factory  # type: ignore[misc]
    for f in dataclasses.fields(Recipe)
    if f.default_factory is not dataclasses.MISSING
}
TOP_LEVEL = ("name", "description")

# Allowed words for the options that are words.
CHOICES: dict[str, tuple[str, ...]] = {
    "preprocess.method": ("none", "standardize", "whiten"),
    "sampler.target": ("boundaries", "affinities"),
    "train.optimizer": ("adam", "sgd"),
    "train.best_mode": ("max", "min"),
    "train.mixed_precision": ("none", "float16", "bfloat16"),
    "train.mode": ("patch", "dense"),
    "inference.blend": ("bump", "gaussian", "valid"),
    "postprocess.method": ("watershed_2d", "affinity_watershed"),
}
EXPORT_FORMATS = ("isbi2012", "snemi3d", "cremi")


def dict_to_recipe(data: typing.Mapping, *, name: str | None = None) -> Recipe:
    """A checked :class:`Recipe` from a mapping of sections.

    Args:
        data: ``{section: {key: value}}`` plus optional ``name`` and ``description``.
        name: the recipe's name when ``data`` has none.

    Raises:
        InputError: an unknown section or key, a wrong type or a value not allowed;
            the message names the key.
    """
    if not isinstance(data, typing.Mapping):
        raise InputError(f"a recipe must be a mapping of sections, got {type(data).__name__}")
    allowed = (*TOP_LEVEL, *SECTIONS)
    for key in data:
        if key not in allowed:
            raise InputError(f"unknown recipe section {key!r}; allowed: {', '.join(allowed)}")
    sections = {}
    for section, cls in SECTIONS.items():
        values = data.get(section) or {}
        if not isinstance(values, typing.Mapping):
            raise InputError(f"{section}: expected a mapping of keys, got {values!r}")
        sections[section] = _dict_to_section(cls, values, section)
    recipe = Recipe(
        name=_check(data.get("name", name or "recipe"), str, "name"),
        description=_check(data.get("description", ""), str, "description"),
        **sections,
    )
    check_choices(recipe)
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict:
    """The recipe as plain YAML-ready data, every key included."""
    return dataclasses.asdict(recipe)


def flatten(data: typing.Mapping, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values.

    Args:
        data: a nested mapping; an empty mapping stays a value.
        prefix: put before every key (used by the recursion).

    >>> flatten({"train": {"max_steps": 2}, "name": "x"})
    {'train.max_steps': 2, 'name': 'x'}
    """
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, typing.Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_choice_table(recipe: Any, choices: typing.Mapping[str, tuple[str, ...]]) -> None:
    """Checks each ``"section.key": allowed words`` of ``choices`` against ``recipe``.

    Shared by segmentation and align recipes; the InputError names the key.

    Args:
        recipe: a recipe dataclass.
        choices: ``{"section.key": allowed words}``.
    """
    for key, allowed in choices.items():
        section, name = key.split(".")
        value = getattr(getattr(recipe, section), name)
        if value not in allowed:
            raise InputError(f"{key}: got {value!r}; allowed: {', '.join(allowed)}")


def check_choices(recipe: Recipe) -> None:
    """Checks the options that are words, the export formats and positive budgets."""
    check_choice_table(recipe, CHOICES)
    for fmt in recipe.export.formats:
        if fmt not in EXPORT_FORMATS:
            raise InputError(f"export.formats: got {fmt!r}; allowed: {', '.join(EXPORT_FORMATS)}")
    train = recipe.train
    for key in ("max_steps", "steps_per_epoch", "log_every", "checkpoint_every"):
        if getattr(train, key) < 1:
            raise InputError(f"train.{key}: expected an int >= 1, got {getattr(train, key)}")
    for key in ("validate_every", "histogram_every", "visualize_every"):
        if getattr(train, key) < 0:
            raise InputError(f"train.{key}: expected an int >= 0, got {getattr(train, key)}")
    if not (train.devices in ("auto", "cpu") or (isinstance(train.devices, int)
                                                  and train.devices >= 1)):
        raise InputError(f"train.devices: got {train.devices!r}; allowed: auto, cpu, "
                         "or a number of devices >= 1")
    if train.max_minutes is not None and train.max_minutes <= 0:
        raise InputError(f"train.max_minutes: expected a positive number, got {train.max_minutes}")
    if len(train.dense_output) not in (2, 3) or min(train.dense_output) < 1:
        raise InputError(f"train.dense_output: expected [y, x] or [z, y, x] sizes >= 1, got "
                         f"{train.dense_output}")
    if recipe.postprocess.tune_trials < 1:
        raise InputError("postprocess.tune_trials: expected an int >= 1, got "
                         f"{recipe.postprocess.tune_trials}")
    if recipe.sampler.batch_size < 1:
        raise InputError(f"sampler.batch_size: expected an int >= 1, got {recipe.sampler.batch_size}")


def _dict_to_section(cls, values: typing.Mapping, section: str):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            raise InputError(f"{section}: unknown key {key!r}; allowed: {', '.join(names)}")
    checked = {key: _check(value, hints[key], f"{section}.{key}") for key, value in values.items()}
    return cls(**checked)


def _type_name(tp) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _check(value, tp, key: str):
    """``value`` if it has type ``tp`` (ints pass as floats), else an InputError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            if option is type(None) and value is None:
                return None
        for option in typing.get_args(tp):
            if option is type(None):
                continue
            try:
                return _check(value, option, key)
            except InputError:
                pass
        raise InputError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_check(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is dict:
        if isinstance(value, typing.Mapping):
            return dict(value)
    elif isinstance(value, tp):
        return value
    raise InputError(f"{key}: expected {_type_name(tp)}, got {value!r}")
