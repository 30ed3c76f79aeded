"""Input and output shapes, asked of a built Keras model (never typed in a config).

A model with valid convolutions returns an output window smaller than its input
window, centred in it; a same-padded model returns one of the same size::

    input window  |<------------------- I ------------------->|
    output window           |<--------- O --------->|
                  |<------->|  margin = (I - O) / 2 on each side

This module imports no Keras except in :func:`shape_model`. The shapes are a
:class:`~emkit.models.shapes.Geometry`, the one type that describes a model's windows.
"""

from __future__ import annotations

from emkit.errors import InputError
from emkit.models.shapes import Geometry, geometry


def model_shapes(model) -> Geometry:
    """A built model's :class:`~emkit.models.shapes.Geometry`, checked for sampling.

    The model must have one input and one output of fixed size, one input channel, and an
    output window that can be centred in its input window.

    Args:
        model: a built Keras model with one input and one output.

    Returns:
        Its :class:`~emkit.models.shapes.Geometry` for its own input size.

    Raises:
        InputError: several inputs or outputs, an unknown (None) spatial size, an output
            larger than the input, or an output that cannot be centred in the input.
    """
    name = getattr(model, "name", type(model).__name__)
    in_shape, out_shape = model.input_shape, model.output_shape
    for role, shape in (("input", in_shape), ("output", out_shape)):
        if isinstance(shape, list) or (shape and isinstance(shape[0], (tuple, list))):
            raise InputError(f"model '{name}' has several {role}s {shape}; samplers need one")
        if len(shape) not in (4, 5):
            raise InputError(
                f"model '{name}' {role} shape {tuple(shape)} is neither (batch, y, x, c) nor "
                "(batch, z, y, x, c)"
            )
        if any(n is None for n in shape[1:]):
            raise InputError(
                f"model '{name}' {role} shape {tuple(shape)} has an unknown size; build the "
                "model for a fixed input shape (e.g. input_shape=(16, 128, 128))"
            )
    if len(in_shape) != len(out_shape):
        raise InputError(
            f"model '{name}' maps {len(in_shape) - 2}D inputs {tuple(in_shape)} to "
            f"{len(out_shape) - 2}D outputs {tuple(out_shape)}; expected the same"
        )
    spatial_in, spatial_out = tuple(in_shape[1:-1]), tuple(out_shape[1:-1])
    bad = [(i, o) for i, o in zip(spatial_in, spatial_out) if o > i or (i - o) % 2]
    if bad:
        raise InputError(
            f"model '{name}' output {spatial_out} cannot be centred in its input {spatial_in}: "
            "every output size must be at most the input size and differ from it by an "
            "even number"
        )
    if in_shape[-1] != 1:
        raise InputError(
            f"model '{name}' takes {in_shape[-1]} input channels; EM samplers feed 1"
        )
    return geometry(model, spatial_in)


def shape_model(input_shape, output_shape, *, out_channels: int = 1):
    """A parameter-free Keras model with the given windows: it crops its input.

    For previews and tests that need a model's shapes but not its weights.

    Args:
        input_shape: (Y, X) or (Z, Y, X).
        output_shape: the same rank; centred in the input.
        out_channels: channels of the output (the input channel, repeated).

    Returns:
        A functional ``keras.Model``.
    """
    import keras

    input_shape, output_shape = tuple(input_shape), tuple(output_shape)
    if len(input_shape) not in (2, 3) or len(output_shape) != len(input_shape):
        raise InputError(
            f"input_shape {input_shape} and output_shape {output_shape} must both be (y, x) "
            "or both (z, y, x)"
        )
    crop = []
    for i, o in zip(input_shape, output_shape):
        if o > i or (i - o) % 2:
            raise InputError(
                f"output_shape {output_shape} cannot be centred in input_shape {input_shape}"
            )
        crop.append(((i - o) // 2, (i - o) // 2))
    inputs = keras.Input((*input_shape, 1))
    layer = keras.layers.Cropping2D if len(input_shape) == 2 else keras.layers.Cropping3D
    x = layer(tuple(crop))(inputs)
    if out_channels != 1:
        x = keras.layers.Concatenate()([x] * out_channels)
    return keras.Model(inputs, x, name="shape_model")
