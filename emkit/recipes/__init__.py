"""Recipes: one YAML file per experiment, over typed defaults.

* :mod:`~emkit.recipes.schema`: the sections as dataclasses, strict type checks.
* :mod:`~emkit.recipes.loading`: YAML, ``key=value`` overrides, ``--quick``.
* :mod:`~emkit.recipes.registry`: ``RECIPES``, the static list of shipped recipes.
* :mod:`~emkit.recipes.stages`: each stage built from its section (data, model,
  sampler, the validation pipeline); imports Keras on use.

>>> from emkit.recipes import RECIPES
>>> "isbi_n4" in RECIPES
True
"""

from emkit.recipes.loading import (
    QUICK_OVERRIDES,
    apply_overrides,
    check_recipe,
    dump_recipe,
    load_recipe,
    parse_override,
)
from emkit.recipes.registry import RECIPES, RECIPES_DIR, recipe_path
from emkit.recipes.schema import Recipe, flatten, recipe_from_dict, recipe_to_dict

__all__ = [
    "QUICK_OVERRIDES",
    "RECIPES",
    "RECIPES_DIR",
    "Recipe",
    "apply_overrides",
    "check_recipe",
    "dump_recipe",
    "flatten",
    "load_recipe",
    "parse_override",
    "recipe_from_dict",
    "recipe_path",
    "recipe_to_dict",
]
