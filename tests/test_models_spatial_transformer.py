"""The spatial transformer: exact warps on tiny images, training, and serialization."""

import keras
import numpy as np
import pytest

from emkit.errors import InputError
from emkit.models import shapes
from emkit.models.spatial_transformer import (
    SpatialTransformer,
    affine_grid,
    affine_matrix,
    bilinear_sample,
    identity_grid,
)
from emkit.models.testing import assert_saving_round_trip

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture
def image():
    return np.random.default_rng(0).random((2, 5, 7, 3), dtype=np.float32)


@pytest.mark.parametrize("transform", ["affine", "flow"])
def test_an_untrained_transformer_is_the_identity(image, transform):
    layer = SpatialTransformer(transform, filters=2, depth=2)
    np.testing.assert_allclose(_np(layer(image)), image, atol=1e-6)


def test_bilinear_sampler_on_exact_shifts(image):
    # One pixel right: out[y, x] = in[y, x + 1]; the last column samples outside and reads 0.
    out = _np(bilinear_sample(image, identity_grid(2, 5, 7) + np.array([0.0, 1.0], "float32")))
    np.testing.assert_array_equal(out[:, :, :-1], image[:, :, 1:])
    np.testing.assert_array_equal(out[:, :, -1], 0.0)
    # Half a pixel down: the mean of two rows.
    out = _np(bilinear_sample(image, identity_grid(2, 5, 7) + np.array([0.5, 0.0], "float32")))
    np.testing.assert_allclose(out[:, :-1], (image[:, :-1] + image[:, 1:]) / 2, atol=1e-7)


def test_affine_grid_flip_and_rotation(image):
    flip_x = np.repeat(affine_matrix(scale=(1.0, -1.0))[None], 2, axis=0)
    np.testing.assert_allclose(
        _np(bilinear_sample(image, affine_grid(flip_x, 5, 7))), image[:, :, ::-1], atol=1e-6
    )
    square = image[:, :5, :5]
    quarter = np.repeat(affine_matrix(rotation_deg=90.0)[None], 2, axis=0)
    rotated = _np(bilinear_sample(square, affine_grid(quarter, 5, 5)))
    # theta maps output (y, x) to input (-x, y): out[i, j] = in[4 - j, i].
    np.testing.assert_allclose(rotated, np.rot90(square, k=-1, axes=(1, 2)), atol=1e-5)


def test_moving_and_reference_train_and_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    moving = keras.Input((None, None, 1), name="moving")
    reference = keras.Input((None, None, 1), name="reference")
    warped, flow = SpatialTransformer(
        "flow", filters=2, depth=2, return_transform=True, name="align"
    )([moving, reference])
    model = keras.Model([moving, reference], [warped, flow])
    assert model.output_shape == [(None, None, None, 1), (None, None, None, 2)]
    model.compile(optimizer="adam", loss=["mse", None], run_eagerly=True)
    raw = np.random.default_rng(1).random((2, 12, 12, 1), dtype=np.float32)
    head = model.get_layer("align").loc_out
    before = _np(head.kernel)
    model.train_on_batch(
        [raw, np.roll(raw, 1, axis=2)], [np.roll(raw, 1, axis=2), np.zeros((2, 12, 12, 2))]
    )
    assert not np.array_equal(_np(head.kernel), before)  # the warp is learnable
    assert_saving_round_trip(model, [raw, raw], tmp_path)


def test_affine_transformer_round_trips_and_is_global_in_geometry(tmp_path):
    model = keras.Sequential(
        [keras.Input((16, 16, 2)), SpatialTransformer("affine", filters=2, depth=2, name="stn")],
        name="stn_model",
    )
    raw = np.random.default_rng(2).random((1, 16, 16, 2), dtype=np.float32)
    assert_saving_round_trip(model, raw, tmp_path)
    layer = model.get_layer("stn")
    assert SpatialTransformer.from_config(layer.get_config()).get_config() == layer.get_config()
    assert shapes.field_of_view(model) == (None, None)


def test_bad_arguments_are_named():
    with pytest.raises(InputError, match=r"transform: got 'tps'; allowed: affine, flow"):
        SpatialTransformer("tps")
    with pytest.raises(InputError, match=r"depth: expected an int >= 1, got 0"):
        SpatialTransformer(depth=0)
    with pytest.raises(InputError, match=r"SpatialTransformer takes 2D images"):
        SpatialTransformer()(keras.Input((4, 8, 8, 1)))
