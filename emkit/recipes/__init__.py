"""Recipes: one YAML file per experiment, over typed defaults.

* :mod:`~emkit.recipes.schema`: the sections as dataclasses, strict type checks.
* :mod:`~emkit.recipes.loading`: YAML, ``key=value`` overrides, ``--quick``.
* :mod:`~emkit.recipes.shipped`: ``RECIPES``, the static list of shipped recipes.
* :mod:`~emkit.recipes.build`: each stage built from its section (data, model,
  sampler, the validation pipeline); imports Keras on use.
* :mod:`~emkit.recipes.run`: ``run_recipe``, the stages called in order, tracked as one
  MLflow run, resumable.
* :mod:`~emkit.recipes.search`: ``emkit tune recipe``, Optuna trials that each run a recipe.

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
from emkit.recipes.schema import Recipe, dict_to_recipe, flatten, recipe_to_dict
from emkit.recipes.shipped import RECIPES, RECIPES_DIR, recipe_path

__all__ = [
    "QUICK_OVERRIDES",
    "RECIPES",
    "RECIPES_DIR",
    "Recipe",
    "apply_overrides",
    "check_recipe",
    "dict_to_recipe",
    "dump_recipe",
    "flatten",
    "load_recipe",
    "parse_override",
    "recipe_path",
    "recipe_to_dict",
]
