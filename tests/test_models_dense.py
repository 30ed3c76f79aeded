"""Dense inference of the pooled patch classifiers equals sliding the patch classifier."""

import keras
import numpy as np
import pytest

from emkit.errors import InputError
from emkit.models import shapes
from emkit.models.architectures import build_model
from emkit.models.convnet.dense import dense_model, predict_patchwise, with_input_shape
from emkit.models.layers import DilatedMaxPooling
from emkit.models.testing import assert_saving_round_trip, small_spec

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _logits(model):
    """The same model without its sigmoid, to compare pre-saturation values too."""
    return keras.Model(model.input, model.layers[-1].input)


@pytest.mark.parametrize(
    "name, overrides, image_shape",
    [
        ("n4", {}, (102, 101)),
        ("n4", {"residual": True, "batch_norm": True}, (99, 100)),
        ("vd2d", {}, (112, 111)),
        ("vd2d3d", {"out_channels": 3}, (6, 86, 88)),
    ],
)
def test_dense_form_matches_patch_by_patch_to_1e5(name, overrides, image_shape):
    keras.utils.set_random_seed(3)
    model = build_model(small_spec(name, **overrides))
    raw = np.random.default_rng(0).random((*image_shape, 1), dtype=np.float32) * 4.0
    dense = dense_model(model, input_shape=image_shape)
    assert shapes.model_geometry(dense).output_stride == (1,) * len(image_shape)
    for net, dense_net in ((model, dense), (_logits(model), _logits(dense))):
        expected = predict_patchwise(net, raw)
        got = keras.ops.convert_to_numpy(dense_net(raw[None]))[0]
        fov = shapes.field_of_view(model)
        assert got.shape == tuple(n - f + 1 for n, f in zip(image_shape, fov)) + (
            expected.shape[-1],
        )
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert np.ptp(expected) > 1e-3  # the logits really vary across the image


def test_dense_n4_predicts_a_whole_512_slice_in_one_pass():
    model = build_model("n4")
    dense = dense_model(model, output_shape=(512, 512))
    assert dense.input_shape == (None, 606, 606, 1)  # 512 + 95 - 1
    assert dense.output_shape == (None, 512, 512, 1)
    assert [layer.name for layer in dense.layers] == [layer.name for layer in model.layers]
    assert dense.count_params() == model.count_params()


def test_dense_model_takes_any_size_and_round_trips(tmp_path):
    model = build_model(small_spec("n4"))
    dense = dense_model(model)
    raw = np.random.default_rng(1).random((1, 97, 96, 1), dtype=np.float32)
    assert dense(raw).shape == (1, 3, 2, 1)
    assert_saving_round_trip(dense, raw, tmp_path)


def test_networks_without_a_dense_form_are_refused():
    with pytest.raises(
        InputError,
        match=r"dense_model: layer 'up1_transpose' \(Conv2DTranspose\) has no dense form",
    ):
        dense_model(build_model(small_spec("unet2d")))
    with pytest.raises(InputError, match=r"smaller than the field of view"):
        dense_model(build_model(small_spec("n4")), input_shape=(94, 200))


def test_dilated_max_pooling_exact_values():
    x = np.arange(2 * 6, dtype="float32").reshape(1, 2, 6, 1)
    x[0, 0, 3, 0] = 100.0
    layer = DilatedMaxPooling(pool_size=(1, 2), dilation_rate=(1, 3))
    out = keras.ops.convert_to_numpy(layer(x))[0, :, :, 0]
    # out[i, j] = max(x[i, j], x[i, j + 3])
    np.testing.assert_array_equal(out, [[100.0, 4.0, 5.0], [9.0, 10.0, 11.0]])
    assert DilatedMaxPooling.from_config(layer.get_config()).get_config() == layer.get_config()
    assert layer.compute_output_shape((None, 2, 6, 1)) == (None, 2, 3, 1)


def test_with_input_shape_rebuilds_for_a_larger_tile():
    model = build_model(small_spec("n4"))
    bigger = with_input_shape(model, (127, 111))
    assert bigger.output_shape == (None, 3, 2, 1)
    raw = np.random.default_rng(2).random((1, 95, 95, 1), dtype=np.float32)
    small_out = keras.ops.convert_to_numpy(model(raw))
    tile = np.zeros((1, 127, 111, 1), "float32")
    tile[:, :95, :95] = raw
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(bigger(tile))[:, :1, :1], small_out, atol=1e-6
    )
    with pytest.raises(InputError, match=r"input_shape: \[100, 111\] is not a valid input"):
        with_input_shape(model, (100, 111))
