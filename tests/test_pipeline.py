"""Every recipe runs 2 training steps plus validation on tiny crops; kill-and-resume continues the run."""

import keras
import pytest

from emkit.errors import OverwriteError
from emkit.recipes import RECIPES, load_recipe
from emkit.tracking import MemoryTracker, metric_history, run_info

TINY = {
    "n4": ["model.overrides.width_factor=0.0417"],
    "vd2d": ["model.overrides.width_factor=0.0834"],
    "unet2d": ["model.overrides={base_filters: 2, depth: 2, input_shape: [44, 44]}"],
    "unet3d": ["model.overrides={base_filters: 2, depth: 2, input_shape: [4, 16, 16]}"],
    "rsunet": ["model.overrides={widths: [2, 3, 4], input_shape: [4, 16, 16]}"],
}
# The full public data sets are not in the test data: their recipes run on a stand-in.
STAND_IN = {"snemi3d": "medulla", "cremi": "cremi_c_crop"}
COMMON = [
    "train.max_steps=2", "train.steps_per_epoch=2", "train.log_every=1",
    "train.validate_every=2", "train.checkpoint_every=1", "train.histogram_every=2",
    "train.visualize_every=2", "sampler.batch_size=1", "sampler.workers=1",
]


def tiny_recipe(name, shared_data, *extra):
    return load_recipe(name, [*tiny_overrides(name, shared_data), *extra])


def tiny_overrides(name, shared_data):
    """The overrides that make recipe ``name`` tiny (2 steps, tiny crops and net)."""
    base = load_recipe(name)
    ndim3 = base.sampler.target == "affinities"
    overrides = [*COMMON, *TINY[base.model.architecture], f"data.root={shared_data}",
                 "data.crop=[48,48]" if ndim3 else "data.crop=[96,96]",
                 f"evaluation.max_sections={4 if ndim3 else 2}", "postprocess.tune_trials=3"]
    if base.data.name in STAND_IN:
        overrides += [f"data.name={STAND_IN[base.data.name]}", "data.options={}"]
        if STAND_IN[base.data.name] == "cremi_c_crop":  # one labelled section: nothing to
            overrides += ["data.validation_sections=[]", "postprocess.tune=false"]  # hold out
    return overrides


# Align recipes (task: align) train an aligner, not a segmentation: tests/test_align_learned.py.
SEGMENTATION_RECIPES = [n for n in RECIPES if not n.startswith("align_")]


def test_segmentation_recipes_are_every_recipe_but_the_align_ones():
    for name in RECIPES:
        assert (getattr(load_recipe(name), "task", "segment") == "align") == (
            name not in SEGMENTATION_RECIPES), name


@pytest.mark.parametrize("name", SEGMENTATION_RECIPES)
def test_every_recipe_runs_two_steps_and_validation(name, shared_data, tmp_path):
    from emkit.recipes.run import run_recipe

    tracker = MemoryTracker()
    result = run_recipe(tiny_recipe(name, shared_data), output=tmp_path / "run", tracker=tracker)
    assert result.steps == 2 and tracker.status == "FINISHED"
    assert [s for s, _ in tracker.metrics["train_loss"]] == [1, 2]
    assert [s for s, _ in tracker.metrics["val_adapted_rand_error"]] == [2]
    assert {k for k, _, _ in tracker.images} == {"weights", "feature_maps", "val_overlay"}
    for path in ("model.keras", "checkpoints/last.keras", "checkpoints/best.keras",
                 "checkpoints/state.json", "recipe.yaml", "outputs/validation.h5"):
        assert (result.output_dir / path).exists(), path
    assert 0 <= result.metrics["adapted_rand_error"] <= 1
    if name.startswith("isbi"):  # boundary maps: the ISBI scores of the map itself
        for key in ("pixel_error", "v_rand", "v_info"):
            assert 0 <= result.metrics[key] <= 1, key
            assert [s for s, _ in tracker.metrics[f"val_{key}"]] == [2]


class _KillAfter(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) == self.step:
            raise KeyboardInterrupt


def test_kill_and_resume_continues_the_same_mlflow_run(shared_data, tmp_path):
    from emkit.recipes.run import run_recipe
    from emkit.tracking import MlflowTracker
    from emkit.training import read_state

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    recipe = tiny_recipe("isbi_n4", shared_data, "train.max_steps=4", "train.validate_every=0",
                         "train.checkpoint_every=100", f"tracking.uri={uri}")
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, output=out, callbacks=[_KillAfter(2)])
    state = read_state(out / "checkpoints")
    assert state.step == 2 and not state.finished  # saved on interrupt, not only every 100
    assert run_info(uri, state.run_id)["status"] == "KILLED"

    result = run_recipe(recipe, output=out, tracker=MlflowTracker(uri))
    assert result.resumed and result.run_id == state.run_id and result.steps == 4
    assert [s for s, _ in metric_history(uri, result.run_id, "train_loss")] == [1, 2, 3, 4]
    info = run_info(uri, result.run_id)
    assert info["status"] == "FINISHED" and info["params"]["train.max_steps"] == "4"
    assert info["tags"]["git_commit"] and info["tags"]["data.raw_sha256"]
    with pytest.raises(OverwriteError, match="--overwrite"):
        run_recipe(recipe, output=out)


def test_pooled_net_with_a_strided_output_is_refused(shared_data):
    from emkit.errors import InputError
    from emkit.recipes.build import build_network, make_sampler, prepare_data

    recipe = tiny_recipe(
        "isbi_n4", shared_data,
        "model.overrides={width_factor: 0.0417, input_shape: [127, 127]}",  # 3x3 outputs, 16 apart
    )
    model = build_network(recipe)
    with pytest.raises(InputError, match="output stride"):
        make_sampler(recipe, prepare_data(recipe), model)


class _Stop(Exception):
    run_status = "KILLED"


def test_on_validation_sees_each_result_and_can_stop_a_child_run(shared_data, tmp_path):
    from emkit.recipes.run import run_recipe
    from emkit.tracking import PARENT_TAG, MlflowTracker
    from emkit.training import read_state

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    parent = MlflowTracker(uri)
    parent_id = parent.start(experiment="x", run_name="parent")
    recipe = tiny_recipe("isbi_n4", shared_data, "train.max_steps=4", "train.validate_every=1",
                         f"tracking.uri={uri}")
    seen = []

    def on_validation(step, metrics):
        seen.append((step, metrics["rand_error"]))
        if step == 2:
            raise _Stop

    with pytest.raises(_Stop):
        run_recipe(recipe, output=tmp_path / "run", parent_run_id=parent_id,
                   on_validation=on_validation)
    assert [s for s, _ in seen] == [1, 2] and all(0 <= v <= 1 for _, v in seen)
    state = read_state(tmp_path / "run" / "checkpoints")
    info = run_info(uri, state.run_id)
    assert info["status"] == "KILLED" and info["tags"][PARENT_TAG] == parent_id
    assert not state.finished
