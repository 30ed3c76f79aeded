"""The end-to-end setting: a learned aligner in front of a 3D segmentation network.

The DeepSeg thesis (section 2.5, chapter 5) treats realignment with spatial
transformers as a preprocessing stage and names its *end-to-end setting*: the
alignment net sits in front of the segmentation net and both are trained
jointly, by the segmentation loss (plus, here, an optional NCC alignment term).

For an input patch ``(batch, z, y, x, c)`` the :class:`SectionAligner` warps every
section onto a reference section with ONE shared
:class:`~emkit.models.spatial_transformer.SpatialTransformer` (sections are folded
into the batch), keeps the reference section untouched, and hands the stack to the
segmentation network; the output is in the reference section's frame::

    raw (b, z, y, x, c) --fold z--> [moving, reference] --ST--> warped --unfold--> net --> pred
                                      reference = centre section (z // 2)

Reference: ``"center"`` (the default) warps every section directly onto the
patch's centre section. The thesis's Figure 5.1 describes the problem as single
sections translated against the rest of the stack; aligning to one fixed section
then needs one transform per section, all predicted in one batched call, errors
do not accumulate along z, the reference frame is the same for every section
(so the labels, which the sampler keeps in the centre section's frame, match
the output everywhere), and the reference itself is never resampled.
``"neighbor"`` warps each section onto its already aligned neighbour, outward
from the centre (z - 1 transformer calls in sequence): neighbours look more
alike than sections 8 apart, as hand-made aligners exploit, at the price of
drift accumulating along z.

The auxiliary loss is ``ncc_weight * mean(1 - NCC)`` between each warped section
and its reference, over the pixels whose samples fall inside the moving section
(thesis Appendix A.2, cross correlation); it is added only in training calls.

Limits: the warp is global in the patch (its field of view is the whole patch),
so the model takes only its own input size; tiled inference predicts window by
window, each in the frame of its own centre section. A pooled patch classifier
(N4, VD2D-3D) has no dense form behind a global warp and is refused.

Reference:
    M. Jaderberg, K. Simonyan, A. Zisserman, K. Kavukcuoglu. Spatial transformer
    networks. NIPS 2015.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from emkit.errors import InputError
from emkit.models.align_spec import AlignSpec, dict_to_align_spec
from emkit.models.spatial_transformer import SpatialTransformer, bilinear_sample, sampling_coords


def weighted_ncc(a, b, weights, eps: float = 1e-6):
    """Normalized cross correlation per image, over the pixels weighted by ``weights``.

    Args:
        a: ``(n, y, x, c)``.
        b: ``(n, y, x, c)``.
        weights: ``(n, y, x, 1)`` in [0, 1] (e.g. 1 where a warped sample is inside).
        eps: Keeps a constant image at NCC 0 rather than NaN.

    Returns:
        ``(n,)``: ``cov(a, b) / sqrt(var(a) var(b))`` under the weights, in [-1, 1].
    """
    w = ops.broadcast_to(weights, ops.shape(a))
    axes = (1, 2, 3)
    total = ops.sum(w, axis=axes, keepdims=True) + eps
    da = a - ops.sum(w * a, axis=axes, keepdims=True) / total
    db = b - ops.sum(w * b, axis=axes, keepdims=True) / total
    cov = ops.sum(w * da * db, axis=axes)
    var_a = ops.sum(w * da * da, axis=axes)
    var_b = ops.sum(w * db * db, axis=axes)
    return cov / ops.sqrt(var_a * var_b + eps)


@keras.saving.register_keras_serializable(package="emkit")
class SectionAligner(layers.Layer):
    """Warp every section of a 3D patch onto a reference section with one spatial transformer.

    Args:
        transform: ``"affine"`` or ``"flow"`` (see :class:`SpatialTransformer`).
        filters: Feature maps of the first localization conv.
        depth: Localization convs.
        kernel_size: Kernel of the localization convs.
        reference: ``"center"`` or ``"neighbor"`` (see the module docstring).
        ncc_weight: Weight of the auxiliary ``1 - NCC`` loss, added in training calls.
        **kwargs: Passed to ``keras.layers.Layer``.

    Call arguments:
        inputs: ``(batch, z, y, x, c)`` with a fixed ``z``.
        training: Whether this is a training call (the NCC loss is added only then).

    Returns:
        ``(batch, z, y, x, c)``: the sections in the frame of the reference
        (centre) section, which passes through unchanged.
    """

    def __init__(
        self,
        transform: str = "affine",
        filters: int = 8,
        depth: int = 3,
        kernel_size: int = 3,
        reference: str = "center",
        ncc_weight: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # Checks every argument, with the same messages as a recipe's model.align.
        spec = AlignSpec(transform, filters, depth, kernel_size, reference, ncc_weight)
        self.transform = spec.transform
        self.filters = spec.filters
        self.depth = spec.depth
        self.kernel_size = spec.kernel_size
        self.reference = spec.reference
        self.ncc_weight = spec.ncc_weight

        # The one shared transformer.
        self.transformer = SpatialTransformer(
            transform, filters=filters, depth=depth, kernel_size=kernel_size,
            return_transform=True, dtype=self.dtype_policy, name="transformer",
        )

    def build(self, input_shape):
        if len(input_shape) != 5 or input_shape[1] is None:
            raise InputError(
                "inputs: SectionAligner takes 3D patches (batch, z, y, x, c) with a fixed z, "
                f"got shape {tuple(input_shape)}"
            )
        section = (None, *input_shape[2:])
        self.transformer.build([section, section])

    def _warp(self, moving, reference, training):
        """``moving`` warped onto ``reference``, and (for the NCC loss) the fraction of each
        warped pixel that samples inside ``moving``, else None."""
        warped, transform = self.transformer([moving, reference])
        if self.ncc_weight == 0 or not training:
            return warped, None
        shape = ops.shape(moving)
        coords = sampling_coords(transform, self.transform, shape[1], shape[2])
        inside = bilinear_sample(ops.ones_like(moving[..., :1]), coords)
        return warped, inside

    def call(self, inputs, training=None):
        """The patch with every section aligned onto the reference (centre) section.

        Args:
            inputs: ``(batch, z, y, x, c)`` with a fixed ``z``.
            training: Whether this is a training call (the NCC loss is added only then).

        Returns:
            ``(batch, z, y, x, c)``.
        """
        depth = inputs.shape[1]
        center = depth // 2
        section_shape = (-1, *inputs.shape[2:])
        if self.reference == "center":
            reference = ops.repeat(inputs[:, center : center + 1], depth, axis=1)
            moving = ops.reshape(inputs, section_shape)
            references = ops.reshape(reference, section_shape)
            warped, inside = self._warp(moving, references, training)
            warped = ops.reshape(warped, ops.shape(inputs))
            keep = ops.reshape(
                ops.cast(ops.arange(depth) == center, inputs.dtype), (1, depth, 1, 1, 1)
            )
            aligned = keep * inputs + (1.0 - keep) * warped
            if inside is not None:
                ncc = ops.reshape(weighted_ncc(ops.reshape(warped, section_shape), references,
                                               inside), (-1, depth))
                off = 1.0 - ops.reshape(keep, (1, depth))
                loss = ops.sum((1.0 - ncc) * off) / (ops.cast(ops.shape(ncc)[0], "float32")
                                                    * max(depth - 1, 1))
                self.add_loss(self.ncc_weight * loss)
            return aligned
        # "neighbor": outward from the centre, each section onto its aligned neighbour.
        out = [None] * depth
        out[center] = inputs[:, center]
        terms = []
        order = [(z, z - 1) for z in range(center + 1, depth)]
        order += [(z, z + 1) for z in range(center - 1, -1, -1)]
        for z, toward in order:
            warped, inside = self._warp(inputs[:, z], out[toward], training)
            out[z] = warped
            if inside is not None:
                terms.append(ops.mean(1.0 - weighted_ncc(warped, out[toward], inside)))
        if terms:
            self.add_loss(self.ncc_weight * ops.mean(ops.stack(terms)))
        return ops.stack(out, axis=1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        keys = ("transform", "filters", "depth",
                "kernel_size", "reference", "ncc_weight")
        config.update({key: getattr(self, key) for key in keys})
        return config


def _apply_network(net: keras.Model, x):
    """``net``'s layers run again on the tensor ``x``: fresh copies with ``net``'s weights.

    The copies keep their names, so the result is one flat functional graph that
    :mod:`emkit.models.shapes` can walk, and ``model.get_layer(name)`` finds the
    segmentation layers under their usual names.
    """
    tensors: dict[int, object] = {}
    if len(net.inputs) != 1 or len(net.outputs) != 1:
        raise InputError(
            f"net: the aligner goes in front of a network of one input and one output; "
            f"{net.name!r} has {len(net.inputs)} and {len(net.outputs)}"
        )
    for layer in net.layers:
        if type(layer).__name__ == "InputLayer":
            tensors[id(layer.output)] = x
            continue
        old = layer.input
        olds = list(old) if isinstance(old, (list, tuple)) else [old]
        args = [tensors[id(t)] for t in olds]
        copy = type(layer).from_config(layer.get_config())
        out = copy(args if isinstance(old, (list, tuple)) else args[0])
        copy.set_weights(layer.get_weights())
        tensors[id(layer.output)] = out
    return tensors[id(net.outputs[0])]


def build_aligned(net: keras.Model, align: AlignSpec | dict, *, name: str | None = None) -> keras.Model:
    """``net`` with a :class:`SectionAligner` in front, trained jointly (end-to-end setting).

    Args:
        net: A built 3D segmentation network with a fixed input shape; its layers
            are copied with their current weights (``net`` itself is left alone).
        align: An :class:`~emkit.models.align_spec.AlignSpec` or a mapping of its keys.
        name: Model name; default ``{net.name}_aligned``.

    The aligner computes in float32 whatever the dtype policy: sub-pixel sampling
    coordinates need the precision.

    Returns:
        A functional ``keras.Model``: ``raw (b, z, y, x, c) -> aligner -> net``, with
        the same input and output shapes as ``net``. With the untrained (identity)
        aligner it computes exactly what ``net`` computes.

    >>> from emkit.models import build_model
    >>> from emkit.models.testing import small_spec
    >>> model = build_aligned(build_model(small_spec("unet3d")), {"transform": "flow"})
    >>> model.get_layer("aligner").transform, model.output.shape[1:]
    ('flow', (4, 16, 16, 3))
    """
    if not isinstance(align, AlignSpec):
        align = dict_to_align_spec(align, key="align")
    shape = tuple(net.inputs[0].shape)
    if len(shape) != 5:
        raise InputError(
            f"align: {net.name!r} takes inputs of shape {shape}, a 2D network (one section per "
            "patch): there is nothing to align within its input; use a 3D network"
        )
    if any(v is None for v in shape[1:]):
        raise InputError(
            f"align: the aligner warps each section by its whole patch, so {net.name!r} needs "
            f"a fixed input shape; got {shape[1:-1]}"
        )
    from emkit.models import shapes

    stride = shapes.output_stride(net)
    if any(s > 1 for s in stride):
        raise InputError(
            f"align: {net.name!r} has output stride {stride}: a pooled patch classifier predicts "
            "through its dense form, which a global warp does not have; use a U-Net"
        )
    inputs = keras.Input(shape[1:], name=net.layers[0].name)
    aligned = SectionAligner(
        align.transform, filters=align.filters, depth=align.depth,
        kernel_size=align.kernel_size, reference=align.reference,
        ncc_weight=align.ncc_weight, dtype="float32", name="aligner",
    )(inputs)
    outputs = _apply_network(net, aligned)
    return keras.Model(inputs, outputs, name=name or f"{net.name}_aligned")


__all__ = ["SectionAligner", "build_aligned", "weighted_ncc"]
