"""Loading recipes: YAML file, ``key=value`` overrides, ``--quick``, and a semantic check.

>>> recipe = load_recipe("isbi_n4", ["train.max_steps=3"])
>>> recipe.train.max_steps
3
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

from emkit.errors import InputError, yaml_problem
from emkit.io.text import read_yaml_mapping
from emkit.recipes.schema import Recipe, dict_to_recipe, recipe_to_dict
from emkit.recipes.shipped import recipe_path

#: The documented small budget of ``--quick``: the same pipeline, a few minutes on a CPU.
QUICK_OVERRIDES = (
    "train.max_steps=40",
    "train.max_minutes=5",
    "train.validate_every=20",
    "train.checkpoint_every=20",
    "train.histogram_every=40",
    "train.visualize_every=40",
    "evaluation.max_sections=2",
    "postprocess.tune_trials=8",
)


def parse_override(text: str) -> tuple[list[str], object]:
    """``"train.max_steps=10"`` -> ``(["train", "max_steps"], 10)``; the value is YAML.

    >>> parse_override("sampler.offsets=[[1, 0, 0]]")
    (['sampler', 'offsets'], [[1, 0, 0]])
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"override {text!r}: expected key=value, e.g. train.max_steps=100")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise InputError(f"override {text!r}: the value is not valid YAML ({yaml_problem(exc)})") from None
    return key.strip().split("."), parsed


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """A copy of the recipe mapping ``data`` with ``key=value`` overrides set.

    A key names a section and a key (``train.max_steps``), or a key inside a mapping
    option (``model.overrides.width_factor``). Checking happens afterwards.

    Args:
        data: the recipe's mapping, as read from YAML.
        overrides: ``key=value`` strings; values are YAML.
    """
    data = yaml.safe_load(yaml.safe_dump(data))  # a deep copy of plain data
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise InputError(f"override {text!r}: {part!r} is not a section or mapping")
            node = child
        node[path[-1]] = value
    return data


def read_recipe_data(name_or_path) -> dict:
    """The raw mapping of a recipe file (a name of a shipped recipe, or a path)."""
    path = recipe_path(name_or_path)
    data = read_yaml_mapping(path, what="recipe", expected="a mapping of sections",
                             empty_ok=True)
    data.setdefault("name", Path(path).stem)
    return data


def load_recipe(name_or_path, overrides: Iterable[str] = (), *, quick: bool = False,
                segmentation_only: bool = False) -> Recipe:
    """A resolved, checked recipe.

    Args:
        name_or_path: a shipped recipe's name (``emkit recipe list``) or a YAML path.
        overrides: ``key=value`` strings, applied after ``--quick``'s.
        quick: apply :data:`QUICK_OVERRIDES` first.
        segmentation_only: refuse an align recipe (``task: align``, which trains an
            aligner): for the commands that tune, ensemble or evaluate segmentations.

    Raises:
        InputError: unknown keys, wrong types, values not allowed; the message names the key.
    """
    data = read_recipe_data(name_or_path)
    if data.get("task") == "align" and segmentation_only:
        raise InputError(
            f"recipe {str(name_or_path)!r} trains an aligner (task: align); this command takes a "
            "segmentation recipe. Train it with `emkit recipe run` or `emkit align train`")
    if data.get("task") == "align":  # a learned-aligner recipe (emkit.recipes.align_schema)
        from emkit.recipes.align_schema import QUICK_OVERRIDES as ALIGN_QUICK
        from emkit.recipes.align_schema import dict_to_align_recipe

        return dict_to_align_recipe(
            apply_overrides(data, [*(ALIGN_QUICK if quick else ()), *overrides]))
    data = apply_overrides(data, [*(QUICK_OVERRIDES if quick else ()), *overrides])
    recipe = dict_to_recipe(data)
    check_recipe(recipe)
    return recipe


def check_recipe(recipe: Recipe) -> None:
    """Checks what the stages would reject, before any work: names, spec keys, augmentations.

    Imports no Keras.
    """
    from emkit.augment import make_augmentations
    from emkit.datasets import get_info
    from emkit.models import get_spec
    from emkit.models.align_spec import check_alignable, dict_to_align_spec

    get_info(recipe.data.name)
    try:
        spec = get_spec(recipe.model.architecture, **model_overrides(recipe))
    except (TypeError, ValueError) as exc:
        raise InputError(f"model.overrides: {exc}") from None
    check_alignable(spec, dict_to_align_spec(recipe.model.align, key="model.align"))
    try:
        make_augmentations(recipe.sampler.augment)
    except InputError as exc:
        raise InputError(f"sampler.augment: {exc}") from None
    from emkit.postprocess import check_method_options

    check_method_options(recipe.postprocess.method, recipe.postprocess.options)
    out_channels = getattr(spec, "out_channels", None)
    expected = 1 if recipe.sampler.target == "boundaries" else len(recipe.sampler.offsets or [0] * 3)
    if out_channels is not None and out_channels != expected:
        raise InputError(
            f"model: {recipe.model.architecture} outputs {out_channels} channels but "
            f"sampler.target {recipe.sampler.target!r} needs {expected}; set "
            f"model.overrides.out_channels={expected}"
        )
    wanted = "watershed_2d" if recipe.sampler.target == "boundaries" else "affinity_watershed"
    if recipe.postprocess.method != wanted:
        raise InputError(
            f"postprocess.method: {recipe.postprocess.method!r} does not segment "
            f"{recipe.sampler.target}; use {wanted!r}"
        )


def model_overrides(recipe: Recipe) -> dict:
    """The spec overrides with YAML lists turned into tuples."""
    return {
        key: tuple(value) if isinstance(value, list) else value
        for key, value in recipe.model.overrides.items()
    }


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML text, every key shown."""
    return yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False, default_flow_style=None)


__all__ = [
    "QUICK_OVERRIDES",
    "apply_overrides",
    "check_recipe",
    "dump_recipe",
    "load_recipe",
    "model_overrides",
    "parse_override",
    "read_recipe_data",
]
