"""The shipped recipes: a plain, static dict from name to YAML file and one line.

The YAML files live in the repository's top-level ``recipes/`` folder. A wheel carries
the same files as the package ``emkit.recipes.shipped`` (mapped in ``setup.py``), so an
installed emkit finds them without the source tree.
"""

from __future__ import annotations

from pathlib import Path

from emkit.errors import InputError, MissingDataError


def _recipes_dir() -> Path:
    """``recipes/`` of a source checkout, else the copy inside the installed package."""
    checkout = Path(__file__).resolve().parents[2] / "recipes"
    if (checkout / "isbi_n4.yaml").is_file():
        return checkout
    return Path(__file__).resolve().parent / "shipped"


#: The folder that holds the shipped recipe files.
RECIPES_DIR = _recipes_dir()

# Name -> (file, one line for `emkit recipe list`). A plain, static dict.
RECIPES: dict[str, tuple[str, str]] = {
    "isbi_n4": ("isbi_n4.yaml", "N4 patch classifier, 2D boundaries, ISBI 2012 (default job)"),
    "isbi_vd2d": ("isbi_vd2d.yaml", "VD2D, 2D boundaries, ISBI 2012"),
    "isbi_unet": ("isbi_unet.yaml", "U-Net (Ronneberger 2015), 2D boundaries, ISBI 2012"),
    "medulla_rsunet": ("medulla_rsunet.yaml", "RSUNet, 3D affinities, FlyEM medulla cube"),
    "medulla_unet3d_cpu": ("medulla_unet3d_cpu.yaml", "slim 3D U-Net for a 2-CPU budget, 3D affinities, FlyEM medulla cube"),
    "medulla_rsunet_aligned": ("medulla_rsunet_aligned.yaml", "Aligner + RSUNet (end-to-end), 3D affinities, FlyEM medulla cube"),
    "cremi_unet3d": ("cremi_unet3d.yaml", "3D U-Net, sparse labels + blank-section defect, CREMI C crop"),
    "snemi3d_rsunet": ("snemi3d_rsunet.yaml", "RSUNet, 3D affinities, full SNEMI3D (download first)"),
    "cremi_rsunet": ("cremi_rsunet.yaml", "RSUNet, 3D affinities, full CREMI A (download first)"),
    "align_learned_affine": ("align_learned_affine.yaml", "learned affine aligner (task: align), medulla"),
    "align_learned_flow": ("align_learned_flow.yaml", "learned flow-field aligner (task: align), medulla"),
}


def recipe_path(name_or_path) -> Path:
    """The YAML file of a shipped recipe name, or ``name_or_path`` itself if it is a file.

    Raises:
        InputError: neither a recipe name nor a ``.yaml`` file.
        MissingDataError: a path that does not exist.
    """
    text = str(name_or_path)
    if text in RECIPES:
        return RECIPES_DIR / RECIPES[text][0]
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise MissingDataError(f"recipe file {text!r} does not exist")
        return path
    raise InputError(f"unknown recipe {text!r}; shipped: {', '.join(RECIPES)} (or a .yaml path)")


__all__ = ["RECIPES", "RECIPES_DIR", "recipe_path"]
