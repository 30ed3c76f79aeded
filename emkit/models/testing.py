"""Helpers for tests of models: tiny variants of the registered architectures, round-trip checks.

Tiny variants keep every layer of the published architecture but few feature
maps, so that a test builds, trains and saves each one in about a second on a
CPU. Other stages (sampling, training, alignment) can use them too.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from emkit.models import shapes
from emkit.models.architectures import get_spec
from emkit.models.spec import Spec

# Name -> spec overrides that make a registered architecture tiny (a few
# feature maps, fewer levels for the U-Nets), with the smallest useful input.
SMALL_OVERRIDES: dict[str, dict[str, Any]] = {
    "n4": {"width_factor": 1 / 24},
    "vd2d": {"width_factor": 1 / 12},
    "vd2d3d": {"width_factor": 1 / 12},
    "unet2d": {"base_filters": 2, "depth": 2, "input_shape": (44, 44)},
    "unet3d": {"base_filters": 2, "depth": 2, "input_shape": (4, 16, 16)},
    "rsunet": {"widths": (2, 3, 4), "input_shape": (4, 16, 16)},
}


def small_spec(name: str, **overrides: Any) -> Spec:
    """A tiny variant of a registered architecture (see ``SMALL_OVERRIDES``).

    Args:
        name: A name in ``ARCHITECTURES``.
        **overrides: Spec keys to change on top of the small ones.
    """
    return get_spec(name, **{**SMALL_OVERRIDES.get(name, {}), **overrides})


def random_batch(spec_or_model, batch_size: int = 2, input_shape=None, seed: int = 0):
    """Random ``(raw, target)`` arrays that fit a spec or model: raw in [0, 1), binary targets.

    Args:
        spec_or_model: a spec or a built model.
        batch_size: samples in the batch.
        input_shape: the spatial input size; None: the model's own.
        seed: the random seed.
    """
    geometry = shapes.geometry(spec_or_model, input_shape)
    rng = np.random.default_rng(seed)
    raw = rng.random((batch_size, *geometry.input_shape, geometry.in_channels), dtype=np.float32)
    target = rng.random((batch_size, *geometry.output_shape, geometry.out_channels)) > 0.5
    return raw, target.astype("float32")


def assert_saving_round_trip(
    model, raw: np.ndarray, directory: str | os.PathLike, atol: float = 0.0
):
    """Save ``model`` as ``.keras``, load it back, and check its outputs on ``raw`` are unchanged.

    Returns:
        The loaded model.

    Args:
        model: a built Keras model.
        raw: an input batch it takes.
        directory: where to write the ``.keras`` file.
        atol: the largest difference allowed between the two outputs.
    """
    import keras

    from emkit.models.saving import load_model

    path = os.path.join(os.fspath(directory), f"{model.name}.keras")
    model.save(path)
    loaded = load_model(path)
    before = keras.tree.flatten(model(raw, training=False))
    after = keras.tree.flatten(loaded(raw, training=False))
    assert len(before) == len(after)
    for a, b in zip(after, before):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=0, atol=atol
        )
    assert [w.shape for w in loaded.weights] == [w.shape for w in model.weights]
    return loaded


__all__ = ["SMALL_OVERRIDES", "assert_saving_round_trip", "random_batch", "small_spec"]
