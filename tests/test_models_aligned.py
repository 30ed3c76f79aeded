"""The end-to-end setting: an aligner in front of a 3D network (model.align)."""

import re

import keras
import numpy as np
import pytest
from scipy import ndimage

from emkit.augment.defects import Misalign
from emkit.errors import InputError
from emkit.models import build_model, shapes
from emkit.models.align_spec import AlignSpec, dict_to_align_spec
from emkit.models.aligned import SectionAligner, build_aligned, weighted_ncc
from emkit.models.testing import assert_saving_round_trip, small_spec
from emkit.recipes import flatten, load_recipe, recipe_to_dict

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture(scope="module")
def unet():
    keras.utils.set_random_seed(0)
    return build_model(small_spec("unet3d"))  # (4, 16, 16) -> (4, 16, 16, 3)


@pytest.fixture(scope="module")
def raw():
    return np.random.default_rng(0).random((2, 4, 16, 16, 1), dtype=np.float32)


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize("reference", ["center", "neighbor"])
@pytest.mark.parametrize("transform", ["affine", "flow"])
def test_identity_aligner_gives_the_bare_network_output(unet, raw, transform, reference):
    model = build_aligned(unet, {"transform": transform, "reference": reference, "filters": 2})
    np.testing.assert_allclose(_np(model(raw)), _np(unet(raw)), atol=1e-5)
    # Same segmentation layers under the same names, the aligner in front, shapes from the model.
    assert [layer.name for layer in model.layers[2:]] == [layer.name for layer in unet.layers[1:]]
    geometry = shapes.model_geometry(model)
    assert geometry.input_shape == (4, 16, 16) and geometry.output_shape == (4, 16, 16)
    assert geometry.fov == (None, None, None) and geometry.out_channels == 3


def test_the_reference_section_passes_unchanged_and_others_move(raw):
    inputs = keras.Input((4, 16, 16, 1))
    aligner = SectionAligner("affine", filters=2, depth=1, name="aligner")
    model = keras.Model(inputs, aligner(inputs))
    bias = aligner.transformer.loc_out.bias
    bias.assign(np.array([1, 0, 2 / 7.5, 0, 1, 0], "float32"))  # every section: +2 px in y
    out = _np(model(raw))
    np.testing.assert_array_equal(out[:, 2], raw[:, 2])  # centre = 4 // 2
    np.testing.assert_allclose(out[:, [0, 1, 3], :-2], raw[:, [0, 1, 3], 2:], atol=1e-5)


def test_weighted_ncc_exact_values():
    rng = np.random.default_rng(1)
    a = rng.random((1, 5, 6, 1)).astype("float32")
    ones = np.ones((1, 5, 6, 1), "float32")
    np.testing.assert_allclose(_np(weighted_ncc(a, 2 * a + 3, ones)), [1.0], atol=1e-5)
    np.testing.assert_allclose(_np(weighted_ncc(a, 1 - a, ones)), [-1.0], atol=1e-5)
    b = rng.random((1, 5, 6, 1)).astype("float32")
    w = ones.copy()
    w[0, :2] = 0  # only rows 2-4 count
    expected = np.corrcoef(a[0, 2:].ravel(), b[0, 2:].ravel())[0, 1]
    np.testing.assert_allclose(_np(weighted_ncc(a, b, w)), [expected], atol=1e-5)
    # A hand-made pair: (0, 1, 2, 3) against (0, 1, 3, 2): cov 4, var 5 each -> 0.8.
    x = np.array([0, 1, 2, 3], "float32").reshape(1, 1, 4, 1)
    y = np.array([0, 1, 3, 2], "float32").reshape(1, 1, 4, 1)
    np.testing.assert_allclose(_np(weighted_ncc(x, y, np.ones_like(x))), [0.8], atol=1e-5)


def test_ncc_training_warps_shifted_sections_back_onto_the_centre():
    rng = np.random.default_rng(0)
    big = ndimage.gaussian_filter(rng.random((48, 48)), 2.0)
    big = (big - big.mean()) / big.std()
    ref = big[8:40, 8:40]
    dy, dx = 2, -3
    moved = big[8 - dy:40 - dy, 8 - dx:40 - dx]  # the content moved by (+2, -3)
    patch = np.stack([moved, ref, moved])[None, ..., None].astype("float32")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3, 32, 32, 1))
    aligner = SectionAligner("affine", filters=4, depth=2, ncc_weight=1.0, name="aligner")
    model = keras.Model(inputs, aligner(inputs))

    def error():
        out = _np(model(patch))
        return np.abs(out[0, [0, 2], 6:-6, 6:-6, 0] - ref[6:-6, 6:-6]).mean()

    before = error()
    model.compile(optimizer=keras.optimizers.Adam(0.01))  # the NCC term is the only loss
    history = model.fit(patch, epochs=40, verbose=0).history["loss"]
    assert history[-1] < 0.1 * history[0]
    assert error() < 0.1 * before
    _, theta = aligner.transformer([patch[:, 0], patch[:, 1]])
    shift = _np(theta)[0, :, 2] * 15.5  # normalized -> pixels: (32 - 1) / 2
    np.testing.assert_allclose(shift, [dy, dx], atol=0.5)


def test_ncc_loss_is_added_in_training_calls_only(unet, raw):
    model = build_aligned(unet, {"ncc_weight": 0.5, "filters": 2})
    model(raw, training=False)
    assert model.losses == []
    model(raw, training=True)
    (loss,) = model.losses
    # 0.5 * mean over off-centre sections of (1 - NCC(section, centre)), an identity warp.
    warped_inside = np.ones((16, 16, 1), "float32")
    expected = np.mean([
        1 - _np(weighted_ncc(raw[b, z][None], raw[b, 2][None], warped_inside[None]))[0]
        for b in range(2) for z in (0, 1, 3)
    ])
    np.testing.assert_allclose(float(loss), 0.5 * expected, rtol=1e-4)


def test_saving_round_trip_of_a_trained_aligner(unet, raw, tmp_path):
    model = build_aligned(unet, {"transform": "affine", "filters": 2, "ncc_weight": 0.1})
    aligner = model.get_layer("aligner")
    aligner.transformer.loc_out.bias.assign(np.array([1, 0.1, 0.2, -0.05, 1, -0.1], "float32"))
    assert not np.allclose(_np(model(raw)), _np(unet(raw)), atol=1e-3)
    loaded = assert_saving_round_trip(model, raw, tmp_path)
    assert loaded.get_layer("aligner").get_config()["ncc_weight"] == 0.1
    assert shapes.model_geometry(loaded).fov == (None, None, None)


def test_2d_pooled_and_unsized_networks_are_refused():
    with pytest.raises(InputError, match="2D network"):
        build_aligned(build_model(small_spec("unet2d")), {"transform": "affine"})
    with pytest.raises(InputError, match="fixed input shape"):
        build_aligned(build_model(small_spec("unet3d", input_shape=None)), {})
    with pytest.raises(InputError, match="output stride"):
        build_aligned(build_model(small_spec("vd2d3d")), {})
    with pytest.raises(InputError, match=r"align\.transform: got 'rigid'"):
        build_aligned(build_model(small_spec("unet3d")), {"transform": "rigid"})


def test_tiled_inference_uses_the_model_window_or_fails_clearly(unet):
    from emkit.inference import predict_volume

    model = build_aligned(unet, {"filters": 2})
    volume = np.random.default_rng(2).random((6, 24, 24), dtype=np.float32)
    pred = predict_volume(model, volume, progress=False)
    assert pred.shape == (6, 24, 24, 3)
    bare = predict_volume(unet, volume, tile_shape=(4, 16, 16), progress=False)
    np.testing.assert_allclose(pred, bare, atol=1e-5)  # identity aligner: the same tiles
    with pytest.raises(InputError, match="global layer"):
        predict_volume(model, volume, tile_shape=(4, 8, 8), progress=False)


# ----------------------------------------------------------------------------- recipe keys


def test_align_spec_checks_every_key():
    assert dict_to_align_spec(None) is None
    assert dict_to_align_spec({}) == AlignSpec()
    assert dict_to_align_spec({"ncc_weight": 1}).ncc_weight == 1.0
    for config, message in [
        ({"transform": "rigid"}, "model.align.transform: got 'rigid'; allowed: affine, flow"),
        ({"filterz": 2}, "model.align: unknown key 'filterz'; allowed: transform"),
        ({"depth": 0}, "model.align.depth: expected an int >= 1, got 0"),
        ({"reference": "first"}, "model.align.reference: got 'first'; allowed: center, neighbor"),
        ({"ncc_weight": -1}, "model.align.ncc_weight: expected a number >= 0, got -1"),
        ([1, 2], "model.align: expected a mapping of keys or null"),
    ]:
        with pytest.raises(InputError, match=re.escape(message)):
            dict_to_align_spec(config)


def test_aligned_recipe_loads_and_bad_align_values_name_the_key():
    recipe = load_recipe("medulla_rsunet_aligned")
    assert recipe.model.align["transform"] == "affine"
    params = flatten(recipe_to_dict(recipe))
    assert params["model.align.transform"] == "affine" and params["model.align.ncc_weight"] == 0.1
    assert load_recipe("medulla_rsunet").model.align is None
    for override, message in [
        ("model.align.transform=rigid", "model.align.transform: got 'rigid'"),
        ("model.align.filters=two", "model.align.filters: expected an int >= 1, got 'two'"),
        ("model.align.pad=1", "model.align: unknown key 'pad'"),
        ("model.align=7", "model.align: expected dict | None, got 7"),
    ]:
        with pytest.raises(InputError, match=re.escape(message)):
            load_recipe("medulla_rsunet_aligned", [override])


def test_a_2d_recipe_with_align_gives_a_clear_error():
    with pytest.raises(InputError, match=re.escape("model.align: 'n4' is a 2D network")):
        load_recipe("isbi_n4", ["model.align={transform: affine}"])


# ----------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("depth", [2, 3, 4, 5, 18])
def test_misalign_keep_center_never_moves_the_centre_section(depth):
    augment = Misalign(p=1.0, max_shift=3, shift_labels=False, keep_center=True)
    rng = np.random.default_rng(0)
    moved = set()
    for _ in range(200):
        shifts = augment.draw(rng, (depth, 10, 10))["shifts"]
        assert shifts and depth // 2 not in shifts
        moved.update(shifts)
    assert moved == set(range(depth)) - {depth // 2}
    raw = np.random.default_rng(1).random((depth, 16, 16)).astype("float32")
    labels = np.arange(depth * 16 * 16).reshape(depth, 16, 16)
    new_raw, new_labels = augment.apply(raw, labels, {"shifts": shifts})
    np.testing.assert_array_equal(new_labels, labels[:, 3:-3, 3:-3])  # the labels stay
    np.testing.assert_array_equal(new_raw[depth // 2], raw[depth // 2, 3:-3, 3:-3])
    with pytest.raises(InputError, match="keep_center must be true or false"):
        Misalign(keep_center="yes")


# ----------------------------------------------------------------------------- pipeline


def test_aligned_recipe_runs_two_steps_and_saves_a_loadable_model(shared_data, tmp_path):
    from emkit.models.saving import load_model
    from emkit.recipes.run import run_recipe
    from emkit.tracking import MemoryTracker

    recipe = load_recipe("medulla_rsunet_aligned", [
        "train.max_steps=2", "train.steps_per_epoch=2", "train.log_every=1",
        "train.validate_every=2", "train.checkpoint_every=1", "train.histogram_every=2",
        "train.visualize_every=2", "sampler.batch_size=1", "sampler.workers=1",
        "model.overrides={widths: [2, 3, 4], input_shape: [4, 16, 16]}",
        "model.align.filters=2", f"data.root={shared_data}", "data.crop=[48,48]",
        "evaluation.max_sections=4", "postprocess.tune_trials=3",
    ])
    tracker = MemoryTracker()
    result = run_recipe(recipe, output=tmp_path / "run", tracker=tracker)
    assert result.steps == 2 and tracker.status == "FINISHED"
    assert [s for s, _ in tracker.metrics["train_loss"]] == [1, 2]
    assert tracker.params["model.align.transform"] == "affine"
    assert tracker.params["model.align.ncc_weight"] == 0.1
    model = load_model(result.model_path, compile=False)
    assert isinstance(model.get_layer("aligner"), SectionAligner)
    assert 0 <= result.metrics["adapted_rand_error"] <= 1
