"""The ConvNet presets: N4, VD2D and VD2D-3D with their published layer listings."""

from __future__ import annotations

from emkit.models.convnet.spec import ConvNetSpec, LayerSpec


def _conv(size, filters: int) -> LayerSpec:
    return LayerSpec("conv", size, filters)


def _pool(size, stride=None) -> LayerSpec:
    return LayerSpec("pool", size, stride=stride)


# One line per block, as the papers list them.
# fmt: off

# N4 exactly as the DeepSeg thesis lists it (section 2.6.1; Ciresan et al. 2012):
# conv4x48, pool2, conv5x48, pool2, conv4x48, pool2, conv4x48, pool2, conv3x200,
# then the 1x1 head. Field of view 95x95.
N4 = ConvNetSpec(
    name="n4", ndim=2, out_channels=1, input_shape=(95, 95), layers=(
        _conv(4, 48), _pool(2),
        _conv(5, 48), _pool(2),
        _conv(4, 48), _pool(2),
        _conv(4, 48), _pool(2),
        _conv(3, 200),
    ),
)

# VD2D (Lee, Zlateski et al. 2015, NIPS; ZNN network VD2D): 3x3 convs with
# 24/36/48/60 maps and four 2x2 poolings, conv3x200, then the head. FOV 109x109.
VD2D = ConvNetSpec(
    name="vd2d", ndim=2, out_channels=1, input_shape=(109, 109), layers=(
        _conv(3, 24), _conv(3, 24), _conv(2, 24), _pool(2),
        _conv(3, 36), _conv(3, 36), _pool(2),
        _conv(3, 48), _conv(3, 48), _pool(2),
        _conv(3, 60), _conv(3, 60), _pool(2),
        _conv(3, 200),
    ),
)

# VD2D-3D (same paper; ZNN network VD2D3D): VD2D's 2D layers up to conv3b, then
# a 2x2x2 max-filter that pools (y, x) by 2 but keeps z (stride 1, 2, 2), and
# three 2x3x3 convs with 60/60/100 maps. FOV 5x85x85 (z, y, x).
VD2D3D = ConvNetSpec(
    name="vd2d3d", ndim=3, out_channels=3, input_shape=(5, 85, 85), layers=(
        _conv((1, 3, 3), 24), _conv((1, 3, 3), 24), _conv((1, 2, 2), 24), _pool((1, 2, 2)),
        _conv((1, 3, 3), 36), _conv((1, 3, 3), 36), _pool((1, 2, 2)),
        _conv((1, 3, 3), 48), _conv((1, 3, 3), 48), _pool(2, stride=(1, 2, 2)),
        _conv((2, 3, 3), 60), _conv((2, 3, 3), 60), _conv((2, 3, 3), 100),
    ),
)

# fmt: on


#: Name -> (spec, one line for ``emkit model list``).
PRESETS = {
    "n4": (N4, "N4 patch classifier (Ciresan et al. 2012; DeepSeg thesis listing), 2D boundaries"),
    "vd2d": (VD2D, "VD2D very deep 2D convnet (Lee, Zlateski et al. 2015), 2D boundaries"),
    "vd2d3d": (VD2D3D, "VD2D-3D hybrid 2D-3D convnet (Lee, Zlateski et al. 2015), 3D affinities"),
}
