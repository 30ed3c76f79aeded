"""Every registered architecture builds, trains one step and round-trips through ``.keras``."""

import keras
import numpy as np
import pytest

from emkit.errors import InputError
from emkit.models import shapes
from emkit.models.architectures import ARCHITECTURES, build_model
from emkit.models.convnet.build import build_convnet
from emkit.models.testing import assert_saving_round_trip, random_batch, small_spec

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_builds_trains_one_step_and_round_trips(name, tmp_path):
    keras.utils.set_random_seed(1)
    spec = small_spec(name)
    model = build_model(spec)
    geometry = shapes.model_geometry(model)
    assert geometry.input_shape == shapes.geometry(spec).input_shape
    assert geometry.output_shape == shapes.geometry(spec).output_shape
    assert model.output_shape[-1] == spec.out_channels
    assert model.layers[-1].name == ("boundaries" if spec.out_channels == 1 else "affinities")

    raw, target = random_batch(model)
    # One eager step: the gradient path is the same, without seconds of graph tracing.
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", run_eagerly=True
    )
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    loss = model.train_on_batch(raw, target)
    assert np.isfinite(loss)
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    changed = [not np.array_equal(a, b) for a, b in zip(before, after)]
    assert sum(changed) >= len(changed) // 2

    pred = keras.ops.convert_to_numpy(model(raw, training=False))
    assert pred.shape == (2, *geometry.output_shape, spec.out_channels)
    assert np.all((pred > 0) & (pred < 1))
    loaded = assert_saving_round_trip(model, raw, tmp_path)
    assert shapes.model_geometry(loaded) == geometry


@pytest.mark.parametrize("name", ["n4", "unet3d", "rsunet"])
def test_residual_blocks_switch_on_in_every_family(name):
    plain = build_model(small_spec(name, residual=False))
    residual = build_model(small_spec(name, residual=True))
    adds = [layer for layer in residual.layers if isinstance(layer, keras.layers.Add)]
    assert adds and not any(
        isinstance(layer, keras.layers.Add) and layer.name.endswith("_add")
        for layer in plain.layers
    )
    assert residual.output_shape == plain.output_shape
    assert shapes.field_of_view(residual) == shapes.field_of_view(plain)
    raw, _ = random_batch(residual)
    assert residual(raw).shape == plain(raw).shape


def test_published_parameter_counts():
    # Lee et al. 2015 give about 220K (N4) and 230K (VD2D) parameters.
    assert build_model("n4").count_params() == 219_089
    assert build_model("vd2d").count_params() == 230_513


def test_unet_options_build_with_the_shapes_the_spec_predicts():
    for overrides in (
        {"padding": "same", "upsample": "nearest", "merge": "add"},
        {"padding": "valid", "upsample": "nearest", "batch_norm": True, "residual": True},
        {
            "ndim": 3,
            "kernel": (1, 3, 3),
            "pool": [[1, 2, 2], [2, 2, 2]],
            "input_shape": (8, 44, 44),
        },
    ):
        spec = small_spec("unet2d", **overrides)
        model = build_model(spec)
        assert model.output_shape[1:-1] == shapes.output_shape(spec, spec.input_shape), overrides


def test_builders_take_keywords_and_mappings():
    model = build_convnet(
        name="tiny",
        layers=[{"type": "conv", "size": 3, "filters": 2}, {"type": "pool", "size": 2}],
        out_channels=3,
        input_shape=(6, 6),
    )
    assert model.name == "tiny" and model.output_shape == (None, 2, 2, 3)
    assert build_convnet({"layers": [{"type": "conv", "size": 1, "filters": 1}]}).output_shape == (
        None,
        None,
        None,
        1,
    )


def test_an_invalid_input_shape_fails_at_build_time():
    with pytest.raises(InputError, match=r"input_shape: \[96, 96\] is not a valid input for 'n4'"):
        build_model("n4", input_shape=(96, 96))
    with pytest.raises(InputError, match=r"spec: this builder needs a ConvNetSpec"):
        build_convnet(ARCHITECTURES["rsunet"])


def test_long_range_affinities_are_more_output_channels():
    # 3 nearest-neighbour affinities (z, y, x) + 9 long-range ones, as in Lee et al. 2017.
    model = build_model(small_spec("rsunet", out_channels=12))
    assert model.output_shape == (None, 4, 16, 16, 12)
    assert model.layers[-1].name == "affinities"
