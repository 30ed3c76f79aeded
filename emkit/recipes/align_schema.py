"""Align recipes (``task: align``): one YAML file that trains a learned aligner.

A recipe with the top-level key ``task: align`` is read by :func:`dict_to_align_recipe`
instead of the segmentation schema; ``emkit recipe run`` and ``emkit align train`` run it
through :func:`emkit.recipes.align_run.train_aligner`. Sections (every key optional, typed
defaults below; unknown keys are errors that name the key):

- ``data``: the well-aligned training stack: ``name``, ``root``, ``sections`` ``[start,
  stop)`` (training sections only, so that the benchmark scores held-out ones),
  ``crop`` (training crop edge, pixels), ``prealign`` (``none`` or ``xcorr``: align the
  training stack by cross-correlation first, for data that is not itself aligned).
- ``model``: ``transform`` (``affine`` or ``flow``), ``filters``, ``depth``, ``kernel_size``.
- ``motions``: the random motion of the moving section of each pair, as
  :func:`emkit.align.draw_motions` draws it for one section.
- ``loss``: ``mode`` (``supervised`` or ``unsupervised``), ``ncc`` (``global`` or
  ``local``), ``window``, ``smoothness``.
- ``train``: optimizer, budget, periods; ``tracking`` and ``run`` as in segmentation recipes.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from emkit.errors import InputError
from emkit.recipes.schema import (
    RunConfig,
    TrackingConfig,
    _check,
    _dict_to_section,
    check_choice_table,
)

#: The documented small budget of ``--quick`` for align recipes.
QUICK_OVERRIDES = ("train.max_steps=30", "train.max_minutes=2", "train.checkpoint_every=15",
                   "train.validate_every=15")


@dataclass
class AlignDataConfig:
    name: str = "medulla"
    root: str | None = None
    sections: list[int] = field(default_factory=lambda: [0, 150])
    crop: int = 128
    prealign: str = "none"


@dataclass
class AlignModelConfig:
    transform: str = "affine"
    filters: int = 16
    depth: int = 4
    kernel_size: int = 3


@dataclass
class MotionsConfig:
    jitter_px: float = 2.0
    slip_p: float = 0.3
    slip_px: float = 6.0
    rotation_deg: float = 1.0
    elastic_px: float = 0.0
    elastic_grid: int = 4


@dataclass
class AlignLossConfig:
    mode: str = "supervised"
    ncc: str = "global"
    window: int = 9
    smoothness: float = 0.0


@dataclass
class AlignTrainConfig:
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 8
    steps_per_epoch: int = 50
    max_steps: int = 500
    max_minutes: float | None = 4.0
    log_every: int = 10
    checkpoint_every: int = 100
    validate_every: int = 100
    validation_pairs: int = 16


@dataclass
class AlignRecipe:
    """A learned-aligner training recipe (see the module docstring)."""

    name: str = "align"
    description: str = ""
    task: str = "align"
    data: AlignDataConfig = field(default_factory=AlignDataConfig)
    model: AlignModelConfig = field(default_factory=AlignModelConfig)
    motions: MotionsConfig = field(default_factory=MotionsConfig)
    loss: AlignLossConfig = field(default_factory=AlignLossConfig)
    train: AlignTrainConfig = field(default_factory=AlignTrainConfig)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="emkit-align"))
    run: RunConfig = field(default_factory=RunConfig)


SECTIONS = {f.name: f.type for f in dataclasses.fields(AlignRecipe)
            if f.name not in ("name", "description", "task")}
_CLASSES = {"data": AlignDataConfig, "model": AlignModelConfig, "motions": MotionsConfig,
            "loss": AlignLossConfig, "train": AlignTrainConfig, "tracking": TrackingConfig,
            "run": RunConfig}
CHOICES = {"data.prealign": ("none", "xcorr"), "model.transform": ("affine", "flow"),
           "loss.mode": ("supervised", "unsupervised"), "loss.ncc": ("global", "local"),
           "train.optimizer": ("adam", "sgd")}


def dict_to_align_recipe(data: typing.Mapping, *, name: str | None = None) -> AlignRecipe:
    """A checked :class:`AlignRecipe` from a mapping; InputError names any bad key.

    Args:
        data: the recipe's sections (``data``, ``model``, ``motions``, ``loss``,
            ``train``, ``tracking``, ``run``), plus ``name``, ``description``, ``task``.
        name: the recipe's name when ``data`` has none (default ``"align"``).
    """
    if not isinstance(data, typing.Mapping):
        raise InputError(f"a recipe must be a mapping of sections, got {type(data).__name__}")
    allowed = ("name", "description", "task", *_CLASSES)
    for key in data:
        if key not in allowed:
            raise InputError(f"unknown align recipe section {key!r}; allowed: {', '.join(allowed)}")
    if data.get("task", "align") != "align":
        raise InputError(f"task: got {data.get('task')!r}; an align recipe has task: align")
    sections = {}
    for section, cls in _CLASSES.items():
        values = data.get(section) or {}
        if not isinstance(values, typing.Mapping):
            raise InputError(f"{section}: expected a mapping of keys, got {values!r}")
        if section == "tracking":
            values = {"experiment": "emkit-align", **values}
        sections[section] = _dict_to_section(cls, values, section)
    recipe = AlignRecipe(name=_check(data.get("name", name or "align"), str, "name"),
                         description=_check(data.get("description", ""), str, "description"),
                         **sections)
    check_align_recipe(recipe)
    return recipe


def check_align_recipe(recipe: AlignRecipe) -> None:
    """Checks words, ranges and the data set's name (no Keras, no data read)."""
    from emkit.datasets import get_info

    check_choice_table(recipe, CHOICES)
    get_info(recipe.data.name)
    sections = recipe.data.sections
    if len(sections) != 2 or sections[0] < 0 or sections[1] - sections[0] < 2:
        raise InputError(f"data.sections: expected [start, stop) with at least 2 sections, "
                         f"got {sections}")
    positive = {"data.crop": recipe.data.crop, "model.filters": recipe.model.filters,
                "model.depth": recipe.model.depth, "model.kernel_size": recipe.model.kernel_size,
                "train.batch_size": recipe.train.batch_size,
                "train.steps_per_epoch": recipe.train.steps_per_epoch,
                "train.max_steps": recipe.train.max_steps, "train.log_every": recipe.train.log_every,
                "train.checkpoint_every": recipe.train.checkpoint_every,
                "train.validation_pairs": recipe.train.validation_pairs,
                "motions.elastic_grid": recipe.motions.elastic_grid - 1}
    for key, value in positive.items():
        if value < 1:
            raise InputError(f"{key}: expected a positive int, got {getattr_path(recipe, key)}")
    if recipe.data.crop < 32:
        raise InputError(f"data.crop: expected >= 32 pixels, got {recipe.data.crop}")
    if recipe.loss.window < 3 or recipe.loss.window % 2 == 0:
        raise InputError(f"loss.window: expected an odd int >= 3, got {recipe.loss.window}")
    if recipe.train.validate_every < 0:
        raise InputError(f"train.validate_every: expected >= 0, got {recipe.train.validate_every}")
    if recipe.train.max_minutes is not None and recipe.train.max_minutes <= 0:
        raise InputError(f"train.max_minutes: expected a positive number, got {recipe.train.max_minutes}")
    for key in ("jitter_px", "slip_px", "rotation_deg", "elastic_px", "smoothness"):
        holder = recipe.loss if key == "smoothness" else recipe.motions
        if getattr(holder, key) < 0:
            prefix = "loss" if key == "smoothness" else "motions"
            raise InputError(f"{prefix}.{key}: expected >= 0, got {getattr(holder, key)}")
    if not 0 <= recipe.motions.slip_p <= 1:
        raise InputError(f"motions.slip_p: expected a probability in [0, 1], got {recipe.motions.slip_p}")


def getattr_path(recipe, key: str):
    """The value of a ``section.key`` path of a recipe, e.g. ``"data.crop"``.

    Args:
        recipe: a recipe dataclass.
        key: ``"section.key"`` (exactly one dot).
    """
    section, attr = key.split(".")
    return getattr(getattr(recipe, section), attr)


def align_recipe_to_dict(recipe: AlignRecipe) -> dict:
    """The recipe as plain YAML-ready data, every key included."""
    return dataclasses.asdict(recipe)


__all__ = [
    "QUICK_OVERRIDES",
    "AlignRecipe",
    "align_recipe_to_dict",
    "check_align_recipe",
    "dict_to_align_recipe",
]
