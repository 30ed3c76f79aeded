"""The learned aligner: pair model, losses, conversions to Transforms, training, recipes."""

import re

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from emkit.align import (
    apply_transforms,
    from_translations,
    misalign_stack,
    residual_displacement,
)
from emkit.align.learned import (
    PairSampler,
    align_learned,
    load_align_model,
    transform_to_transforms,
)
from emkit.align.learned_model import (
    NCCLoss,
    build_pair_aligner,
    compile_pair_aligner,
    masked_ncc,
    smoothness,
    standardize,
)
from emkit.errors import InputError
from emkit.io import read_volume
from emkit.models.spatial_transformer import affine_grid, bilinear_sample
from emkit.recipes.align_schema import align_recipe_to_dict, dict_to_align_recipe


@pytest.fixture(scope="module")
def isbi():
    return read_volume("emkit:isbi2012/train-volume", roi=np.s_[:4, :160, :160]).astype(np.float32)


def _pair(moving, reference):
    return {"moving": moving[None, ..., None], "reference": reference[None, ..., None]}


@pytest.mark.parametrize("kind", ["affine", "flow"])
def test_pair_model_starts_as_the_identity(isbi, kind):
    model = build_pair_aligner(kind, filters=4, depth=2)
    moving, reference = isbi[0] / 255, isbi[1] / 255  # a real section pair, in [0, 1]
    out = model(_pair(moving, reference))
    warped = keras.ops.convert_to_numpy(out["warped"])[0]
    np.testing.assert_allclose(warped[..., 0], moving, atol=1e-5)
    assert warped[..., 1].min() > 0.999  # coverage: every sample inside


def test_ncc_loss_is_zero_for_identical_sections_and_matches_numpy(isbi):
    a = standardize(isbi[0, :32, :32])[None, ..., None]
    ones = np.ones_like(a)
    loss = NCCLoss("global")(a, np.concatenate([a, ones], -1))
    assert abs(float(loss)) < 1e-6
    assert abs(float(NCCLoss("local", 5)(a, np.concatenate([a, ones], -1)))) < 1e-5
    # Against NumPy on a 4x5 array with a masked column.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 1, 4, 5, 1)).astype(np.float32)
    w = np.ones_like(x)
    w[..., 4, :] = 0
    m = w[0, ..., 0] > 0
    xa, ya = x[0, ..., 0][m], y[0, ..., 0][m]
    expected = np.corrcoef(xa, ya)[0, 1]
    got = keras.ops.convert_to_numpy(masked_ncc(x, y, w))[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(float(NCCLoss()(y, np.concatenate([x, w], -1))), 1 - expected,
                               rtol=1e-5)


def test_smoothness_is_zero_for_a_constant_flow_and_the_identity():
    flow = np.full((2, 8, 9, 2), 3.5, np.float32)
    assert float(keras.ops.sum(smoothness(flow, "flow"))) == 0.0
    ramp = flow.copy()
    ramp[..., 0] += np.arange(9, dtype=np.float32)  # dx of dy component = 1 everywhere
    np.testing.assert_allclose(keras.ops.convert_to_numpy(smoothness(ramp, "flow")), [0.5, 0.5])
    theta = np.array([[[1, 0, 0], [0, 1, 0]]], np.float32)
    assert float(smoothness(theta, "affine")[0]) == 0.0


def test_supervised_training_reduces_the_loss_on_a_real_pair(isbi):
    keras.utils.set_random_seed(0)
    motions = {"jitter_px": 3.0, "slip_p": 0.0, "slip_px": 0.0, "rotation_deg": 0.0,
               "elastic_px": 0.0, "elastic_grid": 4}
    sampler = PairSampler(isbi[:2], crop=64, motions=motions, batch_size=8, steps_per_epoch=1)
    x, y = sampler[0]  # 8 real ISBI neighbour crops, each with a known translation
    model = compile_pair_aligner(build_pair_aligner("affine", filters=8, depth=3),
                                 optimizer=keras.optimizers.Adam(3e-3))
    before = model.evaluate(x, y, verbose=0, return_dict=True)["transform_coord_error_px"]
    model.fit(x, y, epochs=40, batch_size=8, verbose=0)
    after = model.evaluate(x, y, verbose=0, return_dict=True)["transform_coord_error_px"]
    assert after < 0.8 * before, (before, after)


def test_theta_to_transforms_agrees_with_the_layer(isbi):
    image = isbi[0]
    theta = np.array([[[0.98, -0.05, 0.03], [0.04, 1.01, -0.02]]], np.float32)
    coords = affine_grid(theta, *image.shape)
    warped = keras.ops.convert_to_numpy(bilinear_sample(image[None, ..., None], coords))[0, ..., 0]
    transforms = transform_to_transforms(theta, "affine", image.shape)
    ours = apply_transforms(image[None], transforms)[0]
    inner = np.s_[10:-10, 10:-10]
    np.testing.assert_allclose(ours[inner], warped[inner], atol=1e-4 * 255)


def test_flow_to_transforms_agrees_with_the_layer(isbi):
    image = isbi[0]
    yy, xx = np.indices(image.shape, dtype=np.float32)
    flow = np.stack([2.5 * np.sin(xx / 20), -1.5 * np.cos(yy / 30)], -1)[None]
    coords = np.stack([yy, xx], -1)[None] + flow
    warped = keras.ops.convert_to_numpy(bilinear_sample(image[None, ..., None], coords))[0, ..., 0]
    ours = apply_transforms(image[None], transform_to_transforms(flow, "flow", image.shape))[0]
    inner = np.s_[5:-5, 5:-5]
    np.testing.assert_allclose(ours[inner], warped[inner], atol=1e-4 * 255)


@pytest.mark.parametrize("kind", ["affine", "flow"])
def test_identity_model_keeps_an_aligned_stack(isbi, kind):
    model = build_pair_aligner(kind, filters=4, depth=2)
    transforms = align_learned(isbi[:3, :96, :96], model, prealign="none", drift_sigma=None)
    np.testing.assert_allclose(transforms.matrices, np.repeat(np.eye(3)[None], 3, 0), atol=1e-6)
    assert transforms.fields is None or np.abs(transforms.fields).max() < 1e-6


def test_xcorr_prealignment_recovers_a_translation(isbi):
    stack = np.stack([isbi[0], isbi[0]])
    moved = apply_transforms(stack, from_translations([[0, 0], [3.0, -2.0]]))
    model = build_pair_aligner("affine", filters=4, depth=2)
    transforms = align_learned(moved[:, 8:-8, 8:-8], model, prealign="xcorr", drift_sigma=None)
    step = transforms.matrices[1, :2, 2] - transforms.matrices[0, :2, 2]
    # moved[1](p) = section(p + (3, -2)), so the aligned frame samples it at p - (3, -2).
    np.testing.assert_allclose(step, [-3.0, 2.0], atol=0.1)


def test_saved_model_round_trips(tmp_path, isbi):
    model = compile_pair_aligner(build_pair_aligner("flow", filters=4, depth=2),
                                 mode="unsupervised", ncc="local", smoothness_weight=0.1)
    x = _pair(standardize(isbi[0, :48, :48]), standardize(isbi[1, :48, :48]))
    model.fit(x, {"warped": x["reference"], "transform": np.zeros((1, 48, 48, 2), np.float32)},
              epochs=1, verbose=0)
    path = tmp_path / "align.keras"
    model.save(path)
    loaded = load_align_model(path)
    for key in ("warped", "transform"):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)[key]),
                                   keras.ops.convert_to_numpy(model(x)[key]), atol=1e-6)
    with pytest.raises(InputError, match="not an align model"):
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]).save(tmp_path / "d.keras")
        load_align_model(tmp_path / "d.keras")


def test_learned_alignment_scores_on_a_generator_stack(isbi):
    mis = misalign_stack(isbi[:3], seed=1, slip_p=0.0, rotation_deg=0.0, elastic_px=0.0)
    model = build_pair_aligner("affine", filters=4, depth=2)
    transforms = align_learned(mis.raw, model, prealign="xcorr", drift_sigma=None)
    assert len(transforms) == 3
    error = residual_displacement(transforms, mis.transforms, shape=mis.raw.shape[1:])
    assert np.isfinite(error.mean)


@pytest.mark.parametrize("name", ["align_learned_affine", "align_learned_flow"])
def test_align_recipes_load(name):
    from emkit.recipes import load_recipe

    recipe = load_recipe(name)
    assert recipe.task == "align" and recipe.name == name
    assert recipe.data.sections[1] <= 150  # held-out medulla sections stay out of training
    assert dict_to_align_recipe(align_recipe_to_dict(recipe)) == recipe
    assert load_recipe(name, quick=True).train.max_steps == 30


@pytest.mark.parametrize("overrides, message", [
    (["loss.mode=supervise"], "loss.mode: got 'supervise'"),
    (["model.transfrm=flow"], "model: unknown key 'transfrm'"),
    (["data.crop=16"], "data.crop: expected >= 32"),
    (["data.sections=[5]"], "data.sections: expected [start, stop)"),
    (["motions.slip_p=2"], "motions.slip_p: expected a probability"),
    (["train.max_steps=ten"], "train.max_steps: expected int"),
    (["optimizer={}"], "unknown align recipe section 'optimizer'"),
    (["data.name=mnist"], "unknown data set 'mnist'"),
])
def test_bad_align_recipes_name_the_key(overrides, message):
    from emkit.recipes import load_recipe

    with pytest.raises(InputError, match=re.escape(message)):
        load_recipe("align_learned_flow", overrides)


def test_align_package_imports_without_keras():
    import subprocess
    import sys

    code = "import sys, emkit.align; print('keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["align_learned_affine", "align_learned_flow"])
def test_align_recipes_train_two_steps_log_and_resume(name, shared_data, tmp_path):
    from emkit.recipes import load_recipe
    from emkit.recipes.align_run import train_aligner
    from emkit.tracking import MemoryTracker

    tiny = [f"data.root={shared_data}", "data.crop=32", "model.filters=2", "model.depth=2",
            "train.batch_size=2", "train.steps_per_epoch=2", "train.log_every=1",
            "train.checkpoint_every=1", "train.validate_every=2", "train.validation_pairs=2"]
    tracker = MemoryTracker()
    first = train_aligner(load_recipe(name, [*tiny, "train.max_steps=2"]),
                          output=tmp_path / "run", tracker=tracker)
    assert first.steps == 2 and tracker.status == "FINISHED" and not first.resumed
    assert [s for s, _ in tracker.metrics["train_loss"]] == [1, 2]
    for path in ("model.keras", "checkpoints/last.keras", "recipe.yaml", "overlay.png"):
        assert (first.output_dir / path).exists(), path
    assert np.isfinite(first.metrics["coord_error_px"])
    again = train_aligner(load_recipe(name, [*tiny, "train.max_steps=3"]),
                          output=tmp_path / "run", resume=True, tracker=MemoryTracker())
    assert again.resumed and again.steps == 3
