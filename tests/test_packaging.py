"""The wheel carries what an installed emkit needs away from the source tree."""

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO)],
        check=True, capture_output=True, cwd=out,
    )
    (path,) = out.glob("emkit-*.whl")
    return path


def test_wheel_ships_every_recipe_and_the_isbi_subset(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for recipe in (REPO / "recipes").glob("*.yaml"):
        assert f"emkit/recipes/shipped/{recipe.name}" in names
    assert "emkit/datasets/data/isbi2012/train-volume.tif" in names
    assert "emkit/datasets/data/isbi2012/train-labels.tif" in names


def test_installed_package_finds_its_recipes_without_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = (
        "from emkit.recipes import load_recipe\n"
        "from emkit.recipes.shipped import RECIPES_DIR\n"
        "print(RECIPES_DIR)\n"
        "print(load_recipe('isbi_n4').model.architecture)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "NO_ALBUMENTATIONS_UPDATE": "1"},
    )
    assert result.returncode == 0, result.stderr
    folder, arch = result.stdout.split()
    assert Path(folder) == site / "emkit" / "recipes" / "shipped"
    assert arch == "n4"
    shipped = (site / "emkit/recipes/shipped/isbi_n4.yaml").read_bytes()
    source = (REPO / "recipes/isbi_n4.yaml").read_bytes()
    assert hashlib.sha256(shipped).digest() == hashlib.sha256(source).digest()
