"""The registered architectures: a plain dict from name to spec.

``ARCHITECTURES[name]`` is a spec (:mod:`emkit.models.spec`) with the published
widths and a training patch size; :func:`build_model` turns any spec, or a
registered name plus overrides, into a Keras model. This module imports no
Keras, so ``emkit model list`` starts fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from emkit.errors import InputError
from emkit.models.spec import (
    FAMILIES,
    ConvNetSpec,
    LayerSpec,
    RSUNetSpec,
    Spec,
    UNetSpec,
    keys_to_spec,
    replace,
)


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
    name="n4",
    ndim=2,
    layers=(
        _conv(4, 48), _pool(2),
        _conv(5, 48), _pool(2),
        _conv(4, 48), _pool(2),
        _conv(4, 48), _pool(2),
        _conv(3, 200),
    ),
    out_channels=1,
    input_shape=(95, 95),
)

# VD2D (Lee, Zlateski et al. 2015, NIPS; ZNN network VD2D): 3x3 convs with
# 24/36/48/60 maps and four 2x2 poolings, conv3x200, then the head. FOV 109x109.
VD2D = ConvNetSpec(
    name="vd2d",
    ndim=2,
    layers=(
        _conv(3, 24), _conv(3, 24), _conv(2, 24), _pool(2),
        _conv(3, 36), _conv(3, 36), _pool(2),
        _conv(3, 48), _conv(3, 48), _pool(2),
        _conv(3, 60), _conv(3, 60), _pool(2),
        _conv(3, 200),
    ),
    out_channels=1,
    input_shape=(109, 109),
)

# VD2D-3D (same paper; ZNN network VD2D3D): VD2D's 2D layers up to conv3b, then
# a 2x2x2 max-filter that pools (y, x) by 2 but keeps z (stride 1, 2, 2), and
# three 2x3x3 convs with 60/60/100 maps. FOV 5x85x85 (z, y, x).
VD2D3D = ConvNetSpec(
    name="vd2d3d",
    ndim=3,
    layers=(
        _conv((1, 3, 3), 24), _conv((1, 3, 3), 24), _conv((1, 2, 2), 24), _pool((1, 2, 2)),
        _conv((1, 3, 3), 36), _conv((1, 3, 3), 36), _pool((1, 2, 2)),
        _conv((1, 3, 3), 48), _conv((1, 3, 3), 48), _pool(2, stride=(1, 2, 2)),
        _conv((2, 3, 3), 60), _conv((2, 3, 3), 60), _conv((2, 3, 3), 100),
    ),
    out_channels=3,
    input_shape=(5, 85, 85),
)

# fmt: on

# The original U-Net (Ronneberger et al. 2015): valid 3x3 convs, 64 maps doubling
# over 4 poolings, 2x2 up-convolutions, 572x572 -> 388x388.
UNET2D = UNetSpec(
    name="unet2d",
    ndim=2,
    depth=4,
    base_filters=64,
    padding="valid",
    pool=2,
    upsample="transpose",
    out_channels=1,
    input_shape=(572, 572),
)

# A 3D U-Net for anisotropic serial-section EM: same-padded 3x3x3 convs, 16 maps
# doubling over 3 in-plane (1, 2, 2) poolings, nearest-neighbour affinities.
UNET3D = UNetSpec(
    name="unet3d",
    ndim=3,
    depth=3,
    base_filters=16,
    padding="same",
    pool=(1, 2, 2),
    upsample="transpose",
    out_channels=3,
    input_shape=(16, 128, 128),
)

# The residual symmetric U-Net of Lee et al. 2017 (SNEMI3D), 18x160x160 patches.
RSUNET = RSUNetSpec(name="rsunet", input_shape=(18, 160, 160))

# Name -> spec. A plain, static dict.
ARCHITECTURES: dict[str, Spec] = {
    "n4": N4,
    "vd2d": VD2D,
    "vd2d3d": VD2D3D,
    "unet2d": UNET2D,
    "unet3d": UNET3D,
    "rsunet": RSUNET,
}

# Name -> one line for `emkit model list`.
DESCRIPTIONS: dict[str, str] = {
    "n4": "N4 patch classifier (Ciresan et al. 2012; DeepSeg thesis listing), 2D boundaries",
    "vd2d": "VD2D very deep 2D convnet (Lee, Zlateski et al. 2015), 2D boundaries",
    "vd2d3d": "VD2D-3D hybrid 2D-3D convnet (Lee, Zlateski et al. 2015), 3D affinities",
    "unet2d": "U-Net (Ronneberger et al. 2015), valid convs, 2D boundaries",
    "unet3d": "anisotropic 3D U-Net, same convs, (1,2,2) pooling, 3D affinities",
    "rsunet": "residual symmetric U-Net (Lee et al. 2017, SNEMI3D), 3D affinities",
}

# Spec family -> "module:function" of its builder, imported when first used.
BUILDERS: dict[str, str] = {
    "convnet": "emkit.models.convnet:build_convnet",
    "unet": "emkit.models.unet:build_unet",
    "rsunet": "emkit.models.rsunet:build_rsunet",
}


def dict_to_spec(config: Mapping[str, Any]) -> Spec:
    """Build a spec from a mapping as a recipe writes it.

    Args:
        config: Either ``arch`` (a name in ``ARCHITECTURES``) plus keys that
            override it, or ``family`` (``convnet``, ``unet``, ``rsunet``) plus
            keys over that family's defaults.

    Returns:
        The spec dataclass.

    >>> dict_to_spec({"arch": "n4", "out_channels": 3}).out_channels
    3
    """
    if not isinstance(config, Mapping):
        raise InputError(f"model spec: expected a mapping of keys, got {type(config).__name__}")
    config = dict(config)
    arch = config.pop("arch", None)
    family = config.pop("family", None)
    if arch is not None:
        if arch not in ARCHITECTURES:
            raise InputError(
                f"arch: unknown architecture {arch!r}; registered: {', '.join(ARCHITECTURES)}"
            )
        base = ARCHITECTURES[arch]
        if family is not None and family != base.family:
            raise InputError(f"family: {arch!r} is a {base.family}, got family {family!r}")
        return keys_to_spec(type(base), config, base=base)
    if family is not None:
        if family not in FAMILIES:
            raise InputError(f"family: got {family!r}; allowed: {', '.join(FAMILIES)}")
        return keys_to_spec(FAMILIES[family], config)
    raise InputError(
        "model spec: needs 'arch' (a registered architecture) or 'family' "
        f"({', '.join(FAMILIES)}); got keys {sorted(config)}"
    )


def get_spec(name: str, **overrides: Any) -> Spec:
    """The registered spec ``name``, with ``overrides`` applied (e.g. ``out_channels=3``)."""
    if name not in ARCHITECTURES:
        raise InputError(
            f"architecture: unknown name {name!r}; registered: {', '.join(ARCHITECTURES)}"
        )
    return replace(ARCHITECTURES[name], **overrides) if overrides else ARCHITECTURES[name]


def build_model(spec: Spec | str, **overrides: Any):
    """Build a Keras model from a spec or a registered name.

    Args:
        spec: A spec dataclass or a name in ``ARCHITECTURES``.
        **overrides: Spec keys to change, e.g. ``input_shape=(111, 111)``.

    Returns:
        A functional ``keras.Model``.
    """
    if isinstance(spec, str):
        spec = get_spec(spec, **overrides)
    elif overrides:
        spec = replace(spec, **overrides)
    module_name, function_name = BUILDERS[spec.family].split(":")
    builder = getattr(importlib.import_module(module_name), function_name)
    return builder(spec)


__all__ = ["ARCHITECTURES", "BUILDERS", "DESCRIPTIONS", "build_model", "dict_to_spec", "get_spec"]
