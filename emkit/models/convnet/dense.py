"""Dense inference for the pooled patch classifiers (N4, VD2D, VD2D-3D).

N4 and VD2D were trained as patch classifiers: a 95x95 input gives one output
pixel, and a larger input gives outputs 16 pixels apart. Sliding the patch
classifier over every position would cost one network pass per pixel. The dense
form computes the same numbers for every position in one pass ("filter
rarefaction", the max-filtering of ZNN and the dilated nets of DeepEM): every
max-pooling keeps its window but takes stride 1, and every layer after a pooling
of stride ``s`` spreads its taps ``s`` voxels apart (dilation). Weights are the
same, layer by layer.

Output voxel ``i`` of the dense model is the patch classifier's output for the
input window ``[i, i + fov)``::

    input   |<------------- n = output + fov - 1 ------------->|
    window  [i ........ i + fov)
    output   i   (one voxel per input offset, no loss of resolution)

References:
    A. Giusti, D. Ciresan, J. Masci, L. Gambardella, J. Schmidhuber. Fast image
    scanning with deep max-pooling convolutional neural networks. ICIP 2013.

    A. Zlateski, K. Lee, H. S. Seung. ZNN - a fast and scalable algorithm for
    training 3D convolutional networks on multi-core and many-core shared
    memory machines. IPDPS 2016.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from keras import layers

from emkit.errors import InputError
from emkit.models import shapes
from emkit.models.layers import DilatedMaxPooling

_CONVS = (layers.Conv1D, layers.Conv2D, layers.Conv3D)
_TRANSPOSES = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
_MAX_POOLS = (layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D)
_CROPS = (layers.Cropping1D, layers.Cropping2D, layers.Cropping3D)
_NOT_DENSE = (
    layers.UpSampling1D,
    layers.UpSampling2D,
    layers.UpSampling3D,
    layers.AveragePooling1D,
    layers.AveragePooling2D,
    layers.AveragePooling3D,
    *_TRANSPOSES,
)


def dense_model(model: keras.Model, *, output_shape=None, input_shape=None) -> keras.Model:
    """The dense, full-resolution form of a pooled patch classifier.

    Args:
        model: A convnet of valid convolutions and max-poolings (e.g. from
            :func:`~emkit.models.convnet.build.build_convnet`), trained or not.
        output_shape: Spatial output size wanted, e.g. ``(512, 512)`` for a
            whole slice; the input is then ``output_shape + fov - 1``.
        input_shape: Spatial input size instead; ``None`` for both builds a
            model that takes any input at least the field of view.

    Returns:
        A ``keras.Model`` named ``{model.name}_dense`` with the same layer
        names and weights, whose output voxel ``i`` equals the patch
        classifier's output on the input window starting at ``i``.

    Raises:
        InputError: The model has layers with no dense form (upsampling,
            transposed or same-padded convolutions).
    """
    geometry = shapes.geometry(model, _probe(model))
    ndim = len(geometry.fov)
    if output_shape is not None and input_shape is not None:
        raise InputError("dense_model: give output_shape or input_shape, not both")
    if output_shape is not None:
        output_shape = shapes.check_input_shape(output_shape, ndim)
        input_shape = tuple(o + f - 1 for o, f in zip(output_shape, geometry.fov))
    elif input_shape is not None:
        input_shape = shapes.check_input_shape(input_shape, ndim)
        small = [n for n, f in zip(input_shape, geometry.fov) if n < f]
        if small:
            raise InputError(
                f"input_shape: {list(input_shape)} is smaller than the field of view "
                f"{list(geometry.fov)} of {model.name!r}"
            )
    spatial = input_shape if input_shape is not None else (None,) * ndim
    return _rebuild(model, spatial, _dense_layer, name=f"{model.name}_dense")


def with_input_shape(model: keras.Model, input_shape) -> keras.Model:
    """The same network (same layers and weights) built for another spatial input size.

    Args:
        model: A functional Keras model.
        input_shape: Spatial input size, checked with
            :func:`emkit.models.shapes.output_shape`; ``None`` for any size.
    """
    if input_shape is not None:
        shapes.output_shape(model, input_shape)
        spatial = tuple(input_shape)
    else:
        spatial = (None,) * (len(model.inputs[0].shape) - 2)
    return _rebuild(
        model, spatial, lambda layer, d: (_copy(layer, layer.get_config()), d), model.name
    )


def predict_patchwise(model: keras.Model, raw: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """The patch classifier slid over every position, one window per output voxel.

    The slow reference that :func:`dense_model` must match.

    Args:
        model: A patch classifier whose output for an input of its field of
            view is one voxel.
        raw: ndarray of shape ``(Y, X, C)`` or ``(Z, Y, X, C)``.
        batch_size: Windows per forward pass.

    Returns:
        ndarray of shape ``(Y - fov + 1, X - fov + 1, out_channels)`` (or with Z).
    """
    geometry = shapes.geometry(model, _probe(model))
    fov = geometry.fov
    if raw.ndim != len(fov) + 1:
        raise InputError(
            f"raw: expected {len(fov)} spatial axes and a channel axis, got shape {raw.shape}"
        )
    windows = np.lib.stride_tricks.sliding_window_view(raw, (*fov, raw.shape[-1]))
    out_spatial = windows.shape[: len(fov)]
    windows = windows.reshape(-1, *fov, raw.shape[-1])
    preds = []
    for start in range(0, len(windows), batch_size):
        batch = np.ascontiguousarray(windows[start : start + batch_size], dtype="float32")
        pred = keras.ops.convert_to_numpy(model(batch, training=False))
        preds.append(pred.reshape(len(batch), -1))
    return np.concatenate(preds).reshape(*out_spatial, -1)


# --------------------------------------------------------------------------- graph rebuild


def _probe(model) -> tuple[int, ...]:
    own = shapes.own_input_shape(model)
    return own if own is not None else shapes.smallest_input_shape(model)


def _copy(layer, config):
    return type(layer).from_config(config)


def _dense_layer(layer, dilation: tuple[int, ...]):
    """The dense twin of one layer, and the dilation after it."""
    config = layer.get_config()
    ndim = len(dilation)
    if isinstance(layer, _NOT_DENSE):
        raise InputError(
            f"dense_model: layer {layer.name!r} ({type(layer).__name__}) has no dense form; "
            "only convnets of valid convolutions and max-poolings do (n4, vd2d, vd2d3d)"
        )
    if isinstance(layer, _CONVS):
        if config["padding"] != "valid":
            raise InputError(
                f"dense_model: layer {layer.name!r} has padding {config['padding']!r}; needs 'valid'"
            )
        strides = tuple(config["strides"])
        config["dilation_rate"] = tuple(r * d for r, d in zip(config["dilation_rate"], dilation))
        config["strides"] = (1,) * ndim
        return _copy(layer, config), tuple(d * s for d, s in zip(dilation, strides))
    if isinstance(layer, _MAX_POOLS):
        if config["padding"] != "valid":
            raise InputError(
                f"dense_model: layer {layer.name!r} has padding {config['padding']!r}; needs 'valid'"
            )
        pool = tuple(config["pool_size"])
        strides = tuple(config["strides"] or pool)
        new = DilatedMaxPooling(pool_size=list(pool), dilation_rate=list(dilation), name=layer.name)
        return new, tuple(d * s for d, s in zip(dilation, strides))
    if isinstance(layer, DilatedMaxPooling):
        rate = layer._per_axis(config["dilation_rate"], ndim, "dilation_rate")
        config["dilation_rate"] = [r * d for r, d in zip(rate, dilation)]
        return _copy(layer, config), dilation
    if isinstance(layer, _CROPS):
        crops = config["cropping"] if ndim > 1 else (config["cropping"],)
        config["cropping"] = tuple((a * d, b * d) for (a, b), d in zip(crops, dilation))
        if ndim == 1:
            config["cropping"] = config["cropping"][0]
        return _copy(layer, config), dilation
    if type(layer).__name__ in ("SpatialTransformer", "SectionAligner"):
        raise InputError(
            f"dense_model: layer {layer.name!r} ({type(layer).__name__}) has no dense form"
        )
    return _copy(layer, config), dilation


def _rebuild(model: keras.Model, spatial, transform: Callable, name: str) -> keras.Model:
    """Run ``model``'s layers again on new inputs, each through ``transform``, copying weights."""
    tensors: dict[int, object] = {}
    dilations: dict[int, tuple[int, ...]] = {}
    ndim = len(spatial)
    inputs = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            channels = layer.output.shape[-1]
            new = keras.Input((*spatial, channels), name=layer.name)
            tensors[id(layer.output)] = new
            dilations[id(layer.output)] = (1,) * ndim
            continue
        old_inputs = layer.input
        olds = list(old_inputs) if isinstance(old_inputs, (list, tuple)) else [old_inputs]
        args = [tensors[id(t)] for t in olds]
        rates = {dilations[id(t)] for t in olds}
        if len(rates) > 1:
            raise InputError(f"dense_model: merge {layer.name!r} joins inputs of different strides")
        new_layer, rate = transform(layer, rates.pop())
        out = new_layer(args if isinstance(old_inputs, (list, tuple)) else args[0])
        new_layer.set_weights(layer.get_weights())
        old_outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        new_outputs = out if isinstance(out, (list, tuple)) else [out]
        for old, new in zip(old_outputs, new_outputs):
            tensors[id(old)] = new
            dilations[id(old)] = rate
    inputs = [tensors[id(t)] for t in model.inputs]
    outputs = [tensors[id(t)] for t in model.outputs]
    return keras.Model(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs[0] if len(outputs) == 1 else outputs,
        name=name,
    )


__all__ = ["dense_model", "predict_patchwise", "with_input_shape"]
