"""Package layout that pyproject.toml cannot express: the top-level recipes/ folder is
shipped inside the wheel as the package data of emkit.recipes.shipped, so that
`emkit recipe run isbi_n4` works from an installed emkit, not only from a checkout.
All other metadata lives in pyproject.toml."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["emkit*"]) + [
        "emkit.recipes.shipped", "emkit.recipes.shipped.spaces", "emkit.datasets.data.isbi2012"],
    package_dir={"emkit.recipes.shipped": "recipes",
                 "emkit.recipes.shipped.spaces": "recipes/spaces"},
    package_data={
        "emkit.datasets.data.isbi2012": ["*.tif", "*.md"],
        "emkit.recipes.shipped": ["*.yaml", "README.md"],
        "emkit.recipes.shipped.spaces": ["*.yaml"]},
)
