"""Recipes: every shipped recipe loads and validates; bad recipes give clear errors."""

import re

import pytest
import yaml

from emkit.cli.main import main
from emkit.errors import InputError
from emkit.recipes import (
    RECIPES,
    RECIPES_DIR,
    apply_overrides,
    dict_to_recipe,
    dump_recipe,
    flatten,
    load_recipe,
    parse_override,
    recipe_to_dict,
)


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_loads_and_validates(name):
    recipe = load_recipe(name)
    assert recipe.name == name
    if getattr(recipe, "task", None) == "align":  # a learned-aligner recipe (align_schema)
        from emkit.recipes.align_schema import dict_to_align_recipe

        assert dict_to_align_recipe(recipe_to_dict(recipe)) == recipe
        return
    assert dict_to_recipe(recipe_to_dict(recipe)) == recipe  # resolved form round-trips


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_header_gives_its_command_and_expectation(name):
    text = (RECIPES_DIR / RECIPES[name][0]).read_text()
    header = "".join(line for line in text.splitlines(True) if line.startswith("#"))
    assert f"emkit recipe run {name}" in header
    assert re.search(r"Expected", header)


def test_recipe_folder_holds_exactly_the_registered_recipes():
    assert sorted(p.name for p in RECIPES_DIR.glob("*.yaml")) == sorted(f for f, _ in RECIPES.values())


def test_overrides_and_quick():
    recipe = load_recipe("isbi_n4", ["train.max_steps=7", "model.overrides.width_factor=0.5"])
    assert recipe.train.max_steps == 7 and recipe.model.overrides == {"width_factor": 0.5}
    quick = load_recipe("isbi_n4", quick=True)
    assert quick.train.max_steps == 40 and quick.evaluation.max_sections == 2
    assert load_recipe("isbi_n4", ["train.max_steps=3"], quick=True).train.max_steps == 3
    assert parse_override("sampler.offsets=[[1, 0, 0]]") == (["sampler", "offsets"], [[1, 0, 0]])
    assert apply_overrides({"a": {"b": 1}}, ["a.c=x"]) == {"a": {"b": 1, "c": "x"}}


def test_int_passes_as_float_and_flatten():
    recipe = dict_to_recipe({"train": {"learning_rate": 1}})
    assert recipe.train.learning_rate == 1.0 and isinstance(recipe.train.learning_rate, float)
    assert flatten(recipe_to_dict(recipe))["train.learning_rate"] == 1.0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.max_stepz=3"], "train: unknown key 'max_stepz'"),
        (["train.max_steps=ten"], "train.max_steps: expected int, got 'ten'"),
        (["train.max_steps=true"], "train.max_steps: expected int"),
        (["training.max_steps=3"], "unknown recipe section 'training'"),
        (["sampler.target=boundary"], "sampler.target: got 'boundary'; allowed"),
        (["export.formats=[png]"], "export.formats: got 'png'"),
        (["model.architecture=n5"], "unknown name 'n5'"),
        (["model.overrides.widthfactor=2"], "unknown key 'widthfactor'"),
        (["sampler.augment=[{name: flip, q: 1}]"], "sampler.augment: augment[0]: augmentation 'flip': unknown key 'q'"),
        (["postprocess.options={seedz: 1}"], "postprocess.options: unknown key 'seedz'"),
        (["sampler.target=affinities"], "needs 3; set model.overrides.out_channels=3"),
        (["train.max_steps=0"], "train.max_steps: expected an int >= 1"),
        (["data.name=mnist"], "unknown data set 'mnist'"),
        (["train.max_steps"], "expected key=value"),
    ],
)
def test_bad_recipe_errors_name_the_key(overrides, message):
    with pytest.raises(InputError, match=re.escape(message)):
        load_recipe("isbi_n4", overrides)


def test_bad_recipe_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: {name: isbi2012}\nmodel: [n4]\n")
    with pytest.raises(InputError, match="model: expected a mapping"):
        load_recipe(str(path))
    with pytest.raises(InputError, match="unknown recipe 'nope'"):
        load_recipe("nope")


def test_cli_list_show_and_clear_error(capsys):
    assert main(["recipe", "list"]) == 0
    assert "isbi_n4" in capsys.readouterr().out
    assert main(["recipe", "show", "isbi_n4", "--set", "train.max_steps=5"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["max_steps"] == 5 and shown["model"]["architecture"] == "n4"
    assert main(["recipe", "show", "isbi_n4", "--set", "train.bogus=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emkit: error: train: unknown key 'bogus'") and err.count("\n") == 1


def test_commands_that_take_segmentation_recipes_refuse_an_align_recipe(capsys, tmp_path):
    with pytest.raises(InputError, match=r"'align_learned_affine' trains an aligner \(task: align\)"):
        load_recipe("align_learned_affine", segmentation_only=True)
    assert load_recipe("isbi_n4", segmentation_only=True).name == "isbi_n4"
    for argv in (["ensemble", "train", "align_learned_flow", "--members", "2",
                  "--output", str(tmp_path / "e")],
                 ["tune", "recipe", "align_learned_flow", "--space", str(tmp_path / "s.yaml"),
                  "--n-trials", "1"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "trains an aligner (task: align); this command takes a segmentation recipe" in err
    assert not (tmp_path / "e").exists()


def test_dump_is_yaml_of_every_key():
    data = yaml.safe_load(dump_recipe(load_recipe("medulla_rsunet")))
    assert set(data) >= {"data", "preprocess", "model", "sampler", "train", "inference",
                         "postprocess", "evaluation", "export", "tracking"}
