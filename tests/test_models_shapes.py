"""Field of view, valid sizes and output sizes, checked against Keras's own shape inference."""

import numpy as np
import pytest

from emkit.errors import InputError
from emkit.models import ConvNetSpec, LayerSpec, UNetSpec, shapes
from emkit.models.architectures import ARCHITECTURES
from emkit.models.testing import small_spec
from emkit.models.unet.spec import unet_skip_crops


def test_n4_field_of_view_is_95x95_in_2d():
    # The thesis says 96x96, rounding; the listing gives 95: 4 + 1 + 4*2 + 1*2 + 3*4
    # + 1*4 + 3*8 + 1*8 + 2*16 = 95.
    n4 = ARCHITECTURES["n4"]
    assert shapes.field_of_view(n4) == (95, 95)
    assert shapes.output_stride(n4) == (16, 16)
    assert shapes.smallest_input_shape(n4) == (95, 95)
    assert shapes.output_shape(n4, (95, 95)) == (1, 1)
    assert shapes.output_shape(n4, (95 + 16 * 31, 95 + 16)) == (32, 2)
    assert shapes.valid_input_sizes(n4, axis=0, stop=160) == [95, 111, 127, 143, 159]


def test_published_fields_of_view_and_shapes():
    assert shapes.field_of_view(ARCHITECTURES["vd2d"]) == (109, 109)
    assert shapes.field_of_view(ARCHITECTURES["vd2d3d"]) == (5, 85, 85)
    assert shapes.output_stride(ARCHITECTURES["vd2d3d"]) == (1, 8, 8)
    unet = shapes.geometry(ARCHITECTURES["unet2d"])
    assert unet.output_shape == (388, 388)  # Ronneberger et al. 2015: 572 -> 388
    assert unet.context == (184, 184)
    assert shapes.valid_input_sizes(ARCHITECTURES["unet2d"], -1, 260) == [188, 204, 220, 236, 252]
    rsunet = shapes.geometry(ARCHITECTURES["rsunet"])
    assert rsunet.output_shape == rsunet.input_shape == (18, 160, 160)
    assert shapes.valid_input_sizes(ARCHITECTURES["rsunet"], 1, 50) == [16, 32, 48]


def test_invalid_size_names_the_axis_and_the_nearest_valid_sizes():
    with pytest.raises(
        InputError,
        match=r"input_shape: \[95, 100\].*axis 1.*nearest valid sizes on that axis: 95 or 111",
    ):
        shapes.output_shape(ARCHITECTURES["n4"], (95, 100))
    with pytest.raises(InputError, match=r"input_shape: expected 2 positive ints"):
        shapes.output_shape(ARCHITECTURES["n4"], (95, 95, 95))


def test_nearest_valid_input_shape():
    n4 = ARCHITECTURES["n4"]
    assert shapes.nearest_valid_input_shape(n4, (100, 110)) == (95, 111)
    assert shapes.nearest_valid_input_shape(n4, (100, 110), direction="up") == (111, 111)
    assert shapes.nearest_valid_input_shape(n4, (100, 110), direction="down") == (95, 95)
    assert shapes.nearest_valid_input_shape(ARCHITECTURES["rsunet"], (18, 150, 170)) == (
        18,
        144,
        176,
    )


def test_anisotropic_pooling_only_constrains_the_pooled_axes():
    spec = UNetSpec(ndim=3, depth=2, base_filters=2, padding="valid", pool=(1, 2, 2))
    # z is never pooled: every size that survives the convs is valid.
    zs = shapes.valid_input_sizes(spec, 0, 30)
    assert zs == list(range(zs[0], 30))
    ys = shapes.valid_input_sizes(spec, 1, 80)
    assert set(np.diff(ys)) == {4}


def test_unet_skip_crops_are_centered_and_constant():
    spec = UNetSpec(depth=2, base_filters=2, padding="valid")
    assert unet_skip_crops(spec) == (((16, 16), (16, 16)), ((4, 4), (4, 4)))
    assert unet_skip_crops(UNetSpec(depth=2, padding="same")) == (((0, 0), (0, 0)),) * 2


def _scan_shapes(spec, axis, start, stop):
    base = list(shapes.smallest_input_shape(spec))
    for n in range(max(1, start), stop):
        shape = list(base)
        shape[axis] = n
        yield tuple(shape)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_spec_model_and_keras_shape_inference_agree(name):
    from emkit.models.architectures import build_model

    spec = small_spec(name, input_shape=None)
    model = build_model(spec)
    # The model reports the same numbers as the spec, read from its layers.
    assert shapes.field_of_view(model) == shapes.field_of_view(spec)
    assert shapes.output_stride(model) == shapes.output_stride(spec)
    checked = 0
    for axis in sorted({0, spec.ndim - 1}) if spec.ndim == 3 else [1]:
        smallest = shapes.smallest_input_shape(spec)[axis]
        for shape in _scan_shapes(spec, axis, smallest - 3, smallest + 40):
            try:
                keras_out = tuple(model.compute_output_shape((1, *shape, spec.in_channels))[1:-1])
            except Exception:  # noqa: BLE001 - Keras refuses the size
                keras_out = None
            valid = shapes.is_valid_input_shape(spec, shape)
            assert shapes.is_valid_input_shape(model, shape) == valid, shape
            if valid:
                assert shapes.output_shape(spec, shape) == keras_out, shape
                assert shapes.output_shape(model, shape) == keras_out, shape
                checked += 1
            elif isinstance(spec, ConvNetSpec) and keras_out is not None and min(keras_out) > 0:
                # Keras floors: the voxels beyond the valid size below are wasted.
                lower = shapes.nearest_valid_input_shape(spec, shape, direction="down")
                assert keras_out == shapes.output_shape(spec, lower), shape
    assert checked >= 3


def test_an_invalid_unet_size_really_breaks_the_model():
    from emkit.models.architectures import build_model

    spec = small_spec("unet2d", input_shape=None)
    model = build_model(spec)
    raw = np.zeros((1, 44, 44, 1), "float32")
    assert model(raw).shape == (1, *shapes.output_shape(spec, (44, 44)), 1)
    assert not shapes.is_valid_input_shape(spec, (46, 46))
    with pytest.raises(
        Exception, match=r"[Cc]oncat|[Ii]ncompatible|shape"
    ):  # skip and upsampled path disagree
        model(np.zeros((1, 46, 46, 1), "float32"))


def test_model_geometry_reads_the_built_model():
    from emkit.models.architectures import build_model

    model = build_model(small_spec("n4", input_shape=(111, 127)))
    geometry = shapes.model_geometry(model)
    assert geometry.input_shape == (111, 127)
    assert geometry.output_shape == (2, 3)
    assert geometry.fov == (95, 95)
    assert geometry.output_stride == (16, 16)
    assert geometry.context == (94, 94)
    assert (geometry.in_channels, geometry.out_channels) == (1, 1)


def test_residual_convnet_keeps_the_shapes():
    from emkit.models.architectures import build_model

    spec = ConvNetSpec(
        layers=(
            LayerSpec("conv", 4, 2),
            LayerSpec("conv", 3, 3),
            LayerSpec("pool", 2),
            LayerSpec("conv", 3, 2),
        ),
        residual=True,
    )
    model = build_model(spec)
    assert shapes.field_of_view(spec) == shapes.field_of_view(model) == (11, 11)
    assert model.compute_output_shape((1, 13, 13, 1)) == (1, 2, 2, 1)
