"""The U-Net family's spec (Ronneberger et al. 2015; 3D: Cicek et al. 2016) and its sizes.

Valid U-Nets shrink at every convolution and centre-crop each skip to the upsampled
path; same-padded ones keep their size and need inputs divisible by the poolings.
:func:`unet_axis_sizes` follows one axis level by level, and :func:`unet_skip_crops`
gives the builder its crops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from emkit.errors import InputError
from emkit.io.plain import to_plain
from emkit.models import spec as common


@dataclass(frozen=True)
class UNetSpec(common.BaseSpec):
    """A U-Net (Ronneberger et al. 2015; 3D: Cicek et al. 2016) in 2D or 3D.

    Level ``l`` (0 = full resolution) has ``base_filters * filter_growth**l``
    feature maps and ``convs_per_level`` convolutions on the way down and again
    on the way up; ``depth`` poolings separate the levels.

    Args:
        name: Model name.
        ndim: 2 or 3.
        depth: Number of poolings (levels below the top).
        base_filters: Feature maps at the top level.
        filter_growth: Factor between the feature maps of two levels.
        convs_per_level: Convolutions per level and direction.
        kernel: Convolution kernel, an int or one per axis, e.g. ``[1, 3, 3]``.
        padding: ``"valid"`` (output smaller than input, skips center-cropped)
            or ``"same"``.
        pool: Pooling factors: an int, one per axis (e.g. ``[1, 2, 2]`` for
            anisotropic EM), or a list with one entry per level.
        upsample: ``"transpose"`` (transposed convolution, kernel = stride =
            pool factor) or ``"nearest"`` (nearest-neighbour upsampling + 1x1 conv).
        merge: How a skip joins the upsampled path: ``"concat"`` or ``"add"``.
        in_channels: Channels of the input image.
        out_channels: 1 = boundaries, 3 = affinities, more = long-range too.
        activation: Nonlinearity after every conv.
        residual: Make every level's convs a residual block.
        batch_norm: Batch normalization after every conv.
        input_shape: Spatial input size; ``None`` accepts any valid size.
    """

    family: ClassVar[str] = "unet"

    name: str = "unet"
    ndim: int = 2
    depth: int = 4
    base_filters: int = 64
    filter_growth: int = 2
    convs_per_level: int = 2
    kernel: int | tuple[int, ...] = 3
    padding: str = "valid"
    pool: int | tuple = 2
    upsample: str = "transpose"
    merge: str = "concat"
    in_channels: int = 1
    out_channels: int = 1
    activation: str = "relu"
    residual: bool = False
    batch_norm: bool = False
    input_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        common.check_choice(self.ndim, (2, 3), "ndim")
        common.check_int(self.depth, "depth", minimum=0)
        common.check_int(self.base_filters, "base_filters")
        common.check_int(self.filter_growth, "filter_growth")
        common.check_int(self.convs_per_level, "convs_per_level")
        common.set_field(self, "kernel", common.canonical_size(self.kernel, self.ndim, "kernel"))
        common.check_choice(self.padding, common.PADDINGS, "padding")
        common.set_field(self, "pool", _canonical_levels(self.pool, self.ndim, self.depth, "pool"))
        common.check_choice(self.upsample, common.UPSAMPLE_MODES, "upsample")
        common.check_choice(self.merge, common.MERGE_MODES, "merge")
        self.check_shared_fields()

    def level_filters(self, level: int) -> int:
        return self.base_filters * self.filter_growth**level

    def pool_factors(self) -> tuple[tuple[int, ...], ...]:
        """One per-axis pooling factor per level."""
        return _level_factors(self.pool, self.ndim, self.depth)

    def field_of_view(self) -> tuple[int, ...]:
        """The deepest path's receptive field (an upper bound), per axis."""
        fov = []
        for axis in range(self.ndim):
            r, j = 1, 1
            k = common.per_axis(self.kernel, self.ndim)[axis]
            pools = [p[axis] for p in self.pool_factors()]
            for p in pools:
                r += self.convs_per_level * (k - 1) * j + (p - 1) * j
                j *= p
            r += self.convs_per_level * (k - 1) * j
            for p in reversed(pools):
                j //= p
                r += self.convs_per_level * (k - 1) * j
            fov.append(r)
        return tuple(fov)

    def axis_output_size(self, axis: int, n: int) -> tuple[int | None, str]:
        """Down, bottom and up convs level by level (see :func:`unet_axis_sizes`).

        Arguments as for :meth:`BaseSpec.axis_output_size`; returns ``(size, "")``, or
        ``(None, reason)`` naming the level that fails.
        """
        sizes = unet_axis_sizes(self, axis, n)
        return (sizes[-1][-1], "") if isinstance(sizes, list) else (None, sizes)


def _canonical_levels(value: Any, ndim: int, depth: int, key: str):
    """Pool factors: one size for every level (int / per-axis tuple) or a tuple per level.

    A flat list of ints means one factor per axis; a list containing lists means
    one entry per level. Identical per-level entries collapse to one.
    """
    if isinstance(value, (list, tuple)) and any(isinstance(v, (list, tuple)) for v in value):
        if len(value) != depth:
            raise InputError(
                f"{key}: a per-level list needs one entry per level (depth={depth}), "
                f"got {len(value)}: {to_plain(value)}"
            )
        levels = tuple(
            common.per_axis(common.canonical_size(v, ndim, f"{key}[{i}]"), ndim) for i, v in enumerate(value)
        )
        if len(set(levels)) == 1:
            return common.canonical_size(levels[0], ndim, key)
        return levels
    return common.canonical_size(value, ndim, key)


def _level_factors(value, ndim: int, depth: int) -> tuple[tuple[int, ...], ...]:
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return value
    return (common.per_axis(value, ndim),) * depth


def unet_axis_sizes(spec: UNetSpec, axis: int, n: int):
    """Per-level sizes on one axis: ``[(skip, up), ..., (bottom, output)]``, or a reason string.

    ``skip`` is the size of a level's last down conv, ``up`` the size of the
    upsampled path that joins it.

    Args:
        spec: the U-Net's spec.
        axis: the spatial axis.
        n: the input size on that axis, in voxels.
    """
    ndim = spec.ndim
    pools = [p[axis] for p in spec.pool_factors()]
    if spec.padding == "same":
        total = math.prod(pools)
        if n % total:
            return f"{n} is not divisible by {total}, the product of the poolings"
        sizes, m = [], n
        for p in pools:
            sizes.append([m, m])
            m //= p
        return sizes + [[m, n]]
    shrink = spec.convs_per_level * (common.per_axis(spec.kernel, ndim)[axis] - 1)
    skips, m = [], n
    for level, p in enumerate(pools):
        m -= shrink
        if m < 1:
            return f"level {level} down convs leave {m} voxels from {n}"
        if m % p:
            return f"pool {level} (factor {p}) would drop {m % p} voxel(s) of {m}"
        skips.append(m)
        m //= p
    m -= shrink
    if m < 1:
        return f"the bottom convs leave {m} voxels from {n}"
    bottom = m
    ups = []
    for level in reversed(range(len(pools))):
        m *= pools[level]
        ups.append(m)
        if m > skips[level]:
            return f"level {level}: upsampled size {m} exceeds the skip size {skips[level]}"
        m -= shrink
        if m < 1:
            return f"level {level} up convs leave {m} voxels from {n}"
    ups.reverse()
    return [[s, u] for s, u in zip(skips, ups)] + [[bottom, m]]


def unet_skip_crops(spec: UNetSpec) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Center crops ``(before, after)`` per axis that align each skip with the upsampled path.

    For valid U-Nets they do not depend on the input size; for same padding
    they are zero. One entry per level, top first.
    """
    from emkit.models.shapes import smallest_input_shape

    ndim = spec.ndim
    crops = [[None] * ndim for _ in range(spec.depth)]
    for axis in range(ndim):
        n = smallest_input_shape(spec)[axis]
        sizes = unet_axis_sizes(spec, axis, n)
        for level in range(spec.depth):
            d = sizes[level][0] - sizes[level][1]
            crops[level][axis] = (d // 2, d - d // 2)
    return tuple(tuple(c) for c in crops)


# --------------------------------------------------------------------------- helpers


__all__ = ["UNetSpec", "unet_axis_sizes", "unet_skip_crops"]
