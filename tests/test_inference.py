"""Tiled prediction equals untiled prediction, in 2D and 3D, in memory and out of core."""

import h5py
import keras
import numpy as np
import pytest
import scipy.ndimage as ndi
import zarr

from emkit.errors import InputError
from emkit.inference import create_output, plan_prediction, predict_volume
from emkit.inference.plan import is_equivariant
from emkit.inference.testing import affinity_model, constant_model, mean_model
from emkit.models.architectures import build_model
from emkit.models.convnet.dense import dense_model, with_input_shape
from emkit.models.testing import small_spec

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

NN = [(1, 0, 0), (0, 1, 0), (0, 0, 1)]

def unit(raw):
    return raw.astype(np.float32) / np.float32(255)


@pytest.fixture(scope="module")
def raw():
    return np.random.default_rng(0).integers(0, 256, (7, 37, 29), dtype=np.uint8)


@pytest.fixture(scope="module")
def mean3d():
    return mean_model(3, (6, 12, 12))


@pytest.fixture(scope="module")
def affs3d():
    return affinity_model([*NN, (0, 3, 0), (0, 0, 3)], (6, 12, 12))


# --------------------------------------------------------------------------- known models


@pytest.mark.parametrize("blend, overlap", [("bump", None), ("gaussian", 3), ("valid", None)])
def test_3d_tiled_equals_untiled_mean_filter(raw, mean3d, blend, overlap):
    got = predict_volume(mean3d, raw, blend=blend, overlap=overlap, batch_size=3, progress=False)
    expected = ndi.uniform_filter(unit(raw), 3, mode="mirror")  # scipy "mirror" = numpy "reflect"
    assert got.shape == (*raw.shape, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got[..., 0], expected, rtol=0, atol=1e-5)


def test_2d_model_predicts_a_stack_section_by_section(raw):
    model = mean_model(2, (12, 12))
    got = predict_volume(model, raw, batch_size=5, progress=False)
    expected = np.stack([ndi.uniform_filter(unit(s), 3, mode="mirror") for s in raw])
    np.testing.assert_allclose(got[..., 0], expected, rtol=0, atol=1e-5)
    image = predict_volume(model, raw[3], progress=False)  # (Y, X) in, (Y, X, C) out
    assert image.shape == (37, 29, 1)
    np.testing.assert_allclose(image[..., 0], expected[3], rtol=0, atol=1e-5)


@pytest.mark.parametrize("ndim", [2, 3])
def test_constant_model_is_constant_everywhere(raw, ndim):
    model = constant_model(ndim, (12, 12) if ndim == 2 else (5, 11, 11), value=0.3)
    for blend in ("bump", "gaussian", "valid"):
        got = predict_volume(model, raw, blend=blend, overlap=3, progress=False)
        assert got.shape == (*raw.shape, 2)
        np.testing.assert_allclose(got, 0.3, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 1, 1), (3, 5, 40)])
def test_volume_smaller_than_one_tile(mean3d, shape):
    raw = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    got = predict_volume(mean3d, raw, tile_shape=(4, 10, 10), progress=False)
    expected = ndi.uniform_filter(unit(raw), 3, mode="mirror")
    np.testing.assert_allclose(got[..., 0], expected, rtol=0, atol=1e-5)


def test_valid_unet_tiled_equals_untiled():
    keras.utils.set_random_seed(2)
    model = build_model(small_spec("unet2d"))  # valid convs: 44 -> 4, context 40
    raw = np.random.default_rng(2).random((2, 27, 21), dtype=np.float32)
    got = predict_volume(model, raw, tile_shape=(12, 8), overlap=3, progress=False)
    # Untiled: one pass over the whole mirrored section (28 x 24: the next valid size).
    whole = with_input_shape(model, (68, 64))
    padded = np.pad(raw, ((0, 0), (20, 21), (20, 23)), mode="reflect")[..., None]
    expected = keras.ops.convert_to_numpy(whole(padded))[:, :27, :21]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert np.ptp(expected) > 1e-3


def test_same_padded_model_valid_stitching_equals_untiled(raw):
    model = mean_model(3, (5, 10, 10), padding="same")  # zero-padded inside every tile
    got = predict_volume(model, raw, blend="valid", overlap=(2, 2, 2), progress=False)
    whole = keras.ops.convert_to_numpy(mean_model(3, raw.shape, padding="same")(unit(raw)[None, ..., None]))
    np.testing.assert_allclose(got, whole[0], rtol=0, atol=1e-5)


def test_dense_n4_tiled_equals_its_untiled_dense_output():
    keras.utils.set_random_seed(3)
    model = build_model(small_spec("n4"))  # pooled patch classifier, FOV 95, stride 16
    raw = np.random.default_rng(3).integers(0, 256, (2, 41, 35), dtype=np.uint8)
    plan = plan_prediction(model, raw.shape, tile_shape=(24, 20))
    assert plan.input_shape == (24 + 94, 20 + 94) and plan.output_shape == (24, 20)
    got = predict_volume(model, raw, tile_shape=(24, 20), overlap=5, progress=False)
    dense = dense_model(model)
    padded = np.pad(unit(raw), ((0, 0), (47, 47), (47, 47)), mode="reflect")[..., None]
    expected = keras.ops.convert_to_numpy(dense(padded))
    assert expected.shape == got.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    # The dense net is cached between calls (as for a validation callback) and
    # follows the model's weights as they change.
    head = model.layers[-2]
    head.set_weights([w * 2 for w in head.get_weights()])
    again = predict_volume(model, raw, tile_shape=(24, 20), overlap=5, progress=False)
    expected = keras.ops.convert_to_numpy(dense_model(model)(padded))
    np.testing.assert_allclose(again, expected, rtol=0, atol=1e-5)
    assert np.abs(again - got).max() > 1e-3


def test_same_padded_rsunet_runs_on_odd_volumes():
    keras.utils.set_random_seed(4)
    model = build_model(small_spec("rsunet"))  # own window 4x16x16, same padding
    plan = plan_prediction(model, (9, 40, 37))
    assert plan.model is model  # its own window: no rebuild
    raw = np.random.default_rng(4).random((3, 21, 19), dtype=np.float32)
    plan = plan_prediction(model, raw.shape)
    assert plan.input_shape == (3, 16, 16)  # shrunk to the volume in z
    got = predict_volume(model, raw, batch_size=2, progress=False)
    assert got.shape == (3, 21, 19, 3) and np.isfinite(got).all()
    assert ((got > 0) & (got < 1)).all()


# --------------------------------------------------------------------------- a box (roi)


@pytest.fixture(scope="module")
def same_unet():
    keras.utils.set_random_seed(3)
    return build_model(small_spec("unet3d"))  # same padding, tiles 4x16x16, period (1, 4, 4)


def test_equivariant_models_are_the_unpadded_ones(same_unet, mean3d):
    assert is_equivariant(mean3d) and is_equivariant(build_model(small_spec("unet2d")))
    assert is_equivariant(build_model(small_spec("n4")))  # valid convs and poolings
    assert not is_equivariant(same_unet) and not is_equivariant(build_model(small_spec("rsunet")))
    assert not is_equivariant(mean_model(3, (5, 10, 10), padding="same"))
    x = keras.Input((None, None, 2))
    ones = keras.layers.Conv2D(2, 1, padding="same")(x)  # a 1x1 "same" conv pads nothing
    assert is_equivariant(keras.Model(x, keras.layers.BatchNormalization()(ones)))
    grouped = keras.layers.GroupNormalization(groups=1)(ones)  # statistics over the tile
    assert not is_equivariant(keras.Model(x, grouped))


@pytest.mark.parametrize("blend", ["bump", "valid"])
def test_box_of_a_same_padded_model_equals_the_whole_volume(raw, same_unet, blend):
    whole = predict_volume(same_unet, raw, blend=blend, progress=False)
    # Its output depends on where a tile lies: another tile grid gives other values.
    other = predict_volume(same_unet, raw, blend=blend, overlap=(1, 6, 6), progress=False)
    assert np.abs(other - whole).max() > 1e-3
    boxes = [np.s_[0:7, 0:37, 0:29], np.s_[0:3, 0:12, 0:12], np.s_[2:5, 13:30, 7:21],
             np.s_[5:7, 30:37, 24:29], np.s_[3:4, 5:6, 28:29]]  # edges, cuts through tiles
    for box in boxes:
        got = predict_volume(same_unet, raw, roi=box, blend=blend, batch_size=3, progress=False)
        assert got.shape == whole[box].shape
        np.testing.assert_allclose(got, whole[box], rtol=0, atol=1e-5)


def test_box_of_a_2d_same_padded_image_equals_the_whole_image(raw):
    keras.utils.set_random_seed(5)
    x = keras.Input((12, 12, 1))
    y = keras.layers.Conv2D(3, 3, padding="same", activation="relu")(x)
    model = keras.Model(x, keras.layers.Conv2D(2, 3, padding="same")(y))
    whole = predict_volume(model, raw[2], progress=False)
    got = predict_volume(model, raw[2], roi=np.s_[7:26, 10:29], progress=False)
    np.testing.assert_allclose(got, whole[7:26, 10:29], rtol=0, atol=1e-5)


def test_box_off_the_period_of_a_valid_unet_equals_the_whole_volume():
    keras.utils.set_random_seed(2)
    model = build_model(small_spec("unet2d"))  # valid convs, two poolings: period 4
    raw = np.random.default_rng(2).random((2, 27, 21), dtype=np.float32)
    whole = predict_volume(model, raw, tile_shape=(8, 8), progress=False)
    for box in [np.s_[:, 4:20, 8:21], np.s_[1:2, 2:19, 5:14]]:  # on the period, then off it
        got = predict_volume(model, raw, roi=box, tile_shape=(8, 8), progress=False)
        np.testing.assert_allclose(got, whole[box], rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- out of core


@pytest.mark.parametrize("where", ["pred.zarr:affs", "pred.h5:volumes/affs", "pred.npy"])
def test_out_of_core_output_equals_in_memory(tmp_path, raw, affs3d, where):
    expected = predict_volume(affs3d, raw, progress=False)
    spec = str(tmp_path / where)
    voxel_size = None if where.endswith("npy") else (40, 4, 4)  # npy cannot store it
    with create_output(spec, expected.shape, voxel_size_nm=voxel_size) as out:
        # 0.02 MiB of accumulators: many blocks that share their overlaps
        result = predict_volume(affs3d, raw, out=out, block_mib=0.02, progress=False)
        assert result is out
    path, _, key = spec.partition(":")
    if where.endswith("npy"):
        stored = np.load(path)
    elif ".zarr" in where:
        array = zarr.open_array(path, path=key, mode="r")
        stored = array[...]
        assert list(array.attrs["resolution"]) == [40, 4, 4]
    else:
        with h5py.File(path) as f:
            stored = f[key][...]
            assert f[key].attrs["resolution"].tolist() == [40, 4, 4]
    assert stored.shape == (5, *raw.shape)  # channels first on disk
    np.testing.assert_allclose(np.moveaxis(stored, 0, -1), expected, rtol=0, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.rsplit("/", 1)[1]]  # no temp left


def test_failed_prediction_leaves_no_output(tmp_path, raw, mean3d):
    spec = str(tmp_path / "pred.h5:pred")
    with pytest.raises(InputError), create_output(spec, (*raw.shape, 1)) as out:
        predict_volume(mean3d, raw, out=out, batch_size=0)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- test-time augmentation


def test_tta_of_an_equivariant_boundary_model_changes_nothing(raw, mean3d):
    plain = predict_volume(mean3d, raw, progress=False)
    augmented = predict_volume(mean3d, raw, tta=True, progress=False)
    np.testing.assert_allclose(augmented, plain, rtol=0, atol=1e-5)


def test_tta_moves_affinity_channels(raw, affs3d):
    offsets = [*NN, (0, 3, 0), (0, 0, 3)]
    plain = predict_volume(affs3d, raw, progress=False)
    assert np.ptp(plain) > 0.5
    augmented = predict_volume(affs3d, raw, tta=True, offsets=offsets, progress=False)
    np.testing.assert_allclose(augmented, plain, rtol=0, atol=1e-5)
    ignored = predict_volume(affs3d, raw, tta=True, offsets=None, progress=False)
    assert np.abs(ignored - plain).max() > 0.1  # treating affinities as boundaries is wrong


def test_tta_2d_affinities(raw):
    offsets = [(1, 0), (0, 1), (2, 0), (0, 2)]
    model = affinity_model(offsets, (10, 10))
    plain = predict_volume(model, raw[:3], progress=False)
    augmented = predict_volume(model, raw[:3], tta=True, offsets=offsets, progress=False)
    np.testing.assert_allclose(augmented, plain, rtol=0, atol=1e-5)
    with pytest.raises(InputError, match="not closed"):
        predict_volume(model, raw[:3], tta=True, offsets=[(1, 0), (0, 1), (2, 0), (0, 3)])


# --------------------------------------------------------------------------- errors


def test_errors_name_the_shapes(raw, mean3d):
    with pytest.raises(InputError, match=r"3D .* 2D image of shape \(37, 29\)"):
        predict_volume(mean3d, raw[0], progress=False)
    with pytest.raises(InputError, match="tile_shape: expected"):
        predict_volume(mean3d, raw, tile_shape=(8, 8), progress=False)
    with pytest.raises(InputError, match="batch_size"):
        predict_volume(mean3d, raw, batch_size=0)
    with pytest.raises(InputError, match=r"out: expected shape \(7, 37, 29, 1\)"):
        predict_volume(mean3d, raw, out=np.zeros((7, 37, 29)), progress=False)
    with pytest.raises(InputError, match="blend"):
        predict_volume(mean3d, raw, blend="max", progress=False)
    with pytest.raises(InputError, match="expected a built Keras model"):
        predict_volume(lambda x: x, raw)
    with pytest.raises(InputError, match="roi: expected non-empty slices"):
        predict_volume(mean3d, raw, roi=np.s_[0:7, 5:5, 0:29], progress=False)
