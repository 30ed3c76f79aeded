"""Dense training of the pooled patch classifiers (N4, VD2D, VD2D-3D): ``train.mode: dense``.

A patch classifier learns one labelled output voxel per field-of-view window. Its dense
form (:func:`emkit.models.convnet.dense.dense_model`: stride-1 max-filtering, dilated layers
after each pooling, the same weights) computes the output of *every* window of a larger
input in one pass. Training that form on an output patch of ``O`` voxels with targets at
stride 1 is the same function and the same loss as training the patch classifier on the
``O`` windows at once (Giusti et al. 2013; ZNN trained VD2D this way): the mean loss of
the dense output equals the mean over the single-voxel windows, and so do its gradients
(a test checks both to 1e-5). The dense pass shares the work of overlapping windows, so
it labels tens of times more voxels per second.

The run trains the dense model (``last.keras`` holds it, with the optimizer, for
resume) and saves the patch classifier (``model.keras``, ``best.keras``): the same
network as a patchwise run saves, which ``emkit predict`` treats exactly as before.

    net = build_network(recipe)                     # the patch classifier, 95x95 -> 1x1
    trainer = dense_trainer(net, (32, 32))          # 126x126 -> 32x32, same weights
    ... fit trainer ...
    copy_weights(trainer, net); net.save("model.keras")
"""

from __future__ import annotations

from emkit.errors import InputError


def dense_trainer(net, output_shape):
    """The dense form of a patch classifier with a fixed output patch, for training.

    Args:
        net: a pooled patch classifier (valid convolutions and max-poolings) whose
            input is its field of view.
        output_shape: the labelled output patch, ``(y, x)`` or ``(z, y, x)``; the input
            is ``output_shape + fov - 1``.

    Returns:
        An uncompiled ``keras.Model`` with the same layer names and weights as ``net``,
        output stride 1.

    Raises:
        InputError: ``net`` has layers with no dense form, or ``output_shape`` does not
            fit its dimensions.
    """
    from emkit.models.convnet.dense import dense_model

    ndim = len(net.inputs[0].shape) - 2
    shape = tuple(int(n) for n in output_shape)
    if len(shape) != ndim or min(shape) < 1:
        raise InputError(
            f"train.dense_output: expected {ndim} sizes >= 1 for model {net.name!r}, got "
            f"{list(output_shape)}"
        )
    return dense_model(net, output_shape=shape)


def copy_weights(source, target) -> None:
    """Sets ``target``'s weights to ``source``'s, layer by layer, matched by layer name.

    The dense form and its patch classifier have the same layers (names, kernels) in
    the same order, so this moves trained weights between the two, both ways.

    Raises:
        InputError: a weighted layer of ``target`` has no twin in ``source``, or the
            shapes differ.

    Args:
        source: the model to copy from.
        target: the model to copy into (same layer names).
    """
    layers = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if not layer.weights:
            continue
        twin = layers.get(layer.name)
        if twin is None or [w.shape for w in twin.weights] != [w.shape for w in layer.weights]:
            raise InputError(
                f"model {source.name!r} has no layer {layer.name!r} with the weights of "
                f"{target.name!r}'s; the two are not the same network"
            )
        layer.set_weights(twin.get_weights())


class Exporter:
    """What a run saves and validates: the trained model as the patch classifier.

    ``Exporter(None)`` (patchwise training) hands the model back unchanged;
    ``Exporter(net)`` copies the dense trainer's weights into ``net`` and hands
    back ``net``.
    """

    def __init__(self, net=None):
        self.net = net

    def __call__(self, model):
        if self.net is None or model is self.net:
            return model
        copy_weights(model, self.net)
        return self.net


__all__ = ["Exporter", "copy_weights", "dense_trainer"]
