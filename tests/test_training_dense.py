"""Dense training of pooled nets: the same loss and gradients as the patch classifier's windows."""

import keras
import numpy as np
import pytest

from emkit.errors import InputError
from emkit.models import build_model
from emkit.models.testing import small_spec
from emkit.training import ChannelBCE
from emkit.training.dense import Exporter, copy_weights, dense_trainer


def _windows(x, fov):
    """Every fov window of x (B, Y, X, 1) as a batch (B * Y' * X', fov, fov, 1), row-major."""
    views = np.lib.stride_tricks.sliding_window_view(x[..., 0], fov, axis=(1, 2))
    return np.ascontiguousarray(views.reshape(-1, *fov)[..., None])


def _loss_and_grads(model, x, y, w):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = ChannelBCE()(y, model(x, training=True), sample_weight=w)
    grads = tape.gradient(loss, model.trainable_weights)
    return float(loss), {v.path: g.numpy() for v, g in zip(model.trainable_weights, grads)}


@pytest.mark.parametrize("arch", ["n4", "vd2d"])
def test_dense_loss_and_gradients_equal_the_mean_over_single_pixel_windows(arch):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("GradientTape: the TensorFlow backend")
    keras.utils.set_random_seed(3)
    net = build_model(small_spec(arch))
    fov = tuple(net.input_shape[1:3])
    assert net.output_shape[1:3] == (1, 1)
    out = (3, 4)
    trainer = dense_trainer(net, out)
    assert trainer.output_shape[1:3] == out
    assert trainer.input_shape[1:3] == (out[0] + fov[0] - 1, out[1] + fov[1] - 1)
    rng = np.random.default_rng(0)
    x = rng.random((2, *trainer.input_shape[1:3], 1), dtype=np.float32)
    y = (rng.random((2, *out, 1)) > 0.5).astype(np.float32)
    w = rng.random((2, *out, 1)).astype(np.float32)  # per-pixel weights, as the sampler gives
    dense_loss, dense_grads = _loss_and_grads(trainer, x, y, w)
    patch_loss, patch_grads = _loss_and_grads(
        net, _windows(x, fov), y.reshape(-1, 1, 1, 1), w.reshape(-1, 1, 1, 1))
    assert dense_loss == pytest.approx(patch_loss, rel=1e-5, abs=1e-6)
    assert dense_grads.keys() == patch_grads.keys() and dense_grads
    for path, grad in dense_grads.items():
        np.testing.assert_allclose(grad, patch_grads[path], rtol=1e-4, atol=1e-5, err_msg=path)


def test_exporter_copies_trained_weights_into_the_patch_classifier():
    net = build_model(small_spec("n4"))
    trainer = dense_trainer(net, (2, 2))
    for v in trainer.trainable_weights:
        v.assign(v + 0.25)
    exported = Exporter(net)(trainer)
    assert exported is net and net.output_shape[1:3] == (1, 1)
    for a, b in zip(net.get_weights(), trainer.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert Exporter(None)(trainer) is trainer


def test_dense_trainer_and_copy_weights_refuse_what_does_not_fit():
    net = build_model(small_spec("n4"))
    with pytest.raises(InputError, match="train.dense_output: expected 2 sizes"):
        dense_trainer(net, (4, 4, 4))
    other = build_model(small_spec("vd2d"))
    with pytest.raises(InputError, match="not the same network"):
        copy_weights(other, net)
