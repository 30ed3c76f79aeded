"""The spec of a learned aligner placed in front of a 3D net (``model.align``).

A recipe's ``model.align: {transform: affine}`` (or ``flow``) puts a spatial-transformer
aligner (:mod:`emkit.models.aligned`) before the segmentation net, trained jointly.
:func:`check_alignable` says which nets can take one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emkit.errors import InputError
from emkit.models.convnet.spec import ConvNetSpec
from emkit.models.spec import check_choice, check_int, set_field, spec_fields

ALIGN_TRANSFORMS = ("affine", "flow")
ALIGN_REFERENCES = ("center", "neighbor")


@dataclass(frozen=True)
class AlignSpec:
    """The learned aligner put in front of a 3D network (the thesis's end-to-end setting).

    A recipe writes it as ``model.align`` (null: no aligner); see
    :func:`emkit.models.aligned.build_aligned` for what the model does.

    Args:
        transform: ``"affine"`` (one affine map per section) or ``"flow"`` (a dense
            displacement field per section).
        filters: Feature maps of the first localization conv; doubled per level.
        depth: Localization convs.
        kernel_size: Kernel of the localization convs.
        reference: ``"center"`` (every section is warped onto the patch's centre
            section) or ``"neighbor"`` (each section onto its already aligned
            neighbour on the way to the centre).
        ncc_weight: Weight of the auxiliary alignment loss ``1 - NCC`` between each
            warped section and its reference; 0 trains the aligner through the
            segmentation loss alone.
    """

    transform: str = "affine"
    filters: int = 8
    depth: int = 3
    kernel_size: int = 3
    reference: str = "center"
    ncc_weight: float = 0.0

    def __post_init__(self) -> None:
        check_choice(self.transform, ALIGN_TRANSFORMS, "transform")
        check_int(self.filters, "filters")
        check_int(self.depth, "depth")
        check_int(self.kernel_size, "kernel_size")
        check_choice(self.reference, ALIGN_REFERENCES, "reference")
        weight = self.ncc_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise InputError(f"ncc_weight: expected a number >= 0, got {weight!r}")
        set_field(self, "ncc_weight", float(weight))


def dict_to_align_spec(config: Any, *, key: str = "model.align") -> AlignSpec | None:
    """An :class:`AlignSpec` from a recipe's mapping (``None`` stays ``None``).

    Every error names the full key, e.g. ``model.align.transform: got 'rigid'; ...``.

    >>> dict_to_align_spec({"transform": "flow"}).transform
    'flow'

    Args:
        config: the recipe's ``model.align`` mapping, or None.
        key: the recipe key, for messages.
    """
    if config is None:
        return None
    if not isinstance(config, Mapping):
        raise InputError(f"{key}: expected a mapping of keys or null, got {config!r}")
    allowed = spec_fields(AlignSpec)
    for name in config:
        if name not in allowed:
            raise InputError(f"{key}: unknown key {name!r}; allowed: {', '.join(allowed)}")
    try:
        return AlignSpec(**config)
    except InputError as exc:
        raise InputError(f"{key}.{exc}") from None


def check_alignable(spec: Any, align: AlignSpec | None, *, key: str = "model.align") -> None:
    """Raises InputError when ``spec`` cannot take an aligner in front.

    The aligner warps sections of one patch onto each other: a 2D network sees one
    section, so there is nothing to align; a pooled patch classifier (output stride
    > 1) predicts through its dense form, which a global warp does not have; and the
    warp is global in the patch, so the input size must be fixed.

    Args:
        spec: the segmentation net's spec.
        align: the aligner's spec, or None (nothing to check).
        key: the recipe key, for messages.
    """
    if align is None:
        return
    if spec.ndim != 3:
        raise InputError(
            f"{key}: {spec.name!r} is a 2D network (one section per patch), so there is "
            "nothing to align within its input; use a 3D network (e.g. unet3d, rsunet) or "
            f"set {key}=null"
        )
    if spec.input_shape is None:
        raise InputError(
            f"{key}: the aligner warps each section by its whole patch, so {spec.name!r} needs "
            "a fixed input size; set model.overrides.input_shape=[z, y, x]"
        )
    if isinstance(spec, ConvNetSpec) and any(layer.type == "pool" for layer in spec.layers):
        raise InputError(
            f"{key}: {spec.name!r} is a pooled patch classifier that predicts through its "
            "dense form, which a global warp does not have; use a U-Net (unet3d, rsunet)"
        )


__all__ = ["ALIGN_REFERENCES", "ALIGN_TRANSFORMS", "AlignSpec", "check_alignable",
           "dict_to_align_spec"]
