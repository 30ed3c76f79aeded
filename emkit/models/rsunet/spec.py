"""The residual symmetric U-Net family's spec (Lee et al. 2017, SNEMI3D)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from emkit.errors import InputError
from emkit.io.plain import to_plain
from emkit.models import spec as common


@dataclass(frozen=True)
class RSUNetSpec(common.BaseSpec):
    """The residual symmetric U-Net of Lee et al. 2017 (SNEMI3D "superhuman").

    Same-padded, anisotropic: a ``embed_kernel`` convolution embeds the input;
    every level is a residual block whose first convolution (``block_kernels[0]``,
    1x3x3) feeds a skip that is summed after the last one; levels are joined by
    ``pool`` max-pooling on the way down and by upsampling plus a *summed* skip
    connection on the way up; a final ``embed_kernel`` convolution gives
    ``out_channels`` sigmoid maps (3 nearest-neighbour affinities, more with
    long-range affinities).

    Args:
        name: Model name.
        ndim: 3 (the published form) or 2.
        widths: Feature maps per level, top to bottom; ``len(widths) - 1`` poolings.
        pool: Pooling factor per axis, the same at every level.
        embed_kernel: Kernel of the input and output embedding convolutions.
        block_kernels: Kernels of the convolutions of one residual block.
        upsample: ``"transpose"`` (transposed convolution) or ``"nearest"``
            (nearest-neighbour upsampling + 1x1 conv).
        in_channels: Channels of the input image.
        out_channels: Number of sigmoid output maps.
        activation: Nonlinearity (ELU in the paper).
        residual: Use the residual skip inside each block.
        batch_norm: Batch normalization after every conv (as in the paper).
        input_shape: Spatial input size; ``None`` accepts any valid size.

    Reference:
        K. Lee, J. Zung, P. Li, V. Jain, H. S. Seung. Superhuman accuracy on the
        SNEMI3D connectomics challenge. arXiv:1706.00120, 2017.
    """

    family: ClassVar[str] = "rsunet"

    name: str = "rsunet"
    ndim: int = 3
    widths: tuple[int, ...] = (28, 36, 48, 64, 80)
    pool: int | tuple[int, ...] = (1, 2, 2)
    embed_kernel: int | tuple[int, ...] = (1, 5, 5)
    block_kernels: tuple = ((1, 3, 3), 3, 3)
    upsample: str = "transpose"
    in_channels: int = 1
    out_channels: int = 3
    activation: str = "elu"
    residual: bool = True
    batch_norm: bool = True
    input_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        common.check_choice(self.ndim, (2, 3), "ndim")
        if not isinstance(self.widths, (list, tuple)) or not self.widths:
            raise InputError(f"widths: expected a non-empty list of ints, got {self.widths!r}")
        for i, w in enumerate(self.widths):
            common.check_int(w, f"widths[{i}]")
        common.set_field(self, "widths", tuple(self.widths))
        common.set_field(self, "pool", common.canonical_size(self.pool, self.ndim, "pool"))
        common.set_field(self, "embed_kernel", common.canonical_size(self.embed_kernel, self.ndim, "embed_kernel"))
        if not isinstance(self.block_kernels, (list, tuple)) or not self.block_kernels:
            raise InputError(
                f"block_kernels: expected a non-empty list of kernel sizes, got {self.block_kernels!r}"
            )
        common.set_field(
            self,
            "block_kernels",
            tuple(
                common.canonical_size(k, self.ndim, f"block_kernels[{i}]")
                for i, k in enumerate(self.block_kernels)
            ),
        )
        for key in ("embed_kernel", "block_kernels"):
            kernels = [self.embed_kernel] if key == "embed_kernel" else list(self.block_kernels)
            if any(k % 2 == 0 for kern in kernels for k in common.per_axis(kern, self.ndim)):
                raise InputError(
                    f"{key}: same padding needs odd kernel sizes, got {to_plain(kernels)}"
                )
        common.check_choice(self.upsample, common.UPSAMPLE_MODES, "upsample")
        self.check_shared_fields()

    @property
    def depth(self) -> int:
        """Number of poolings."""
        return len(self.widths) - 1

    def field_of_view(self) -> tuple[int, ...]:
        """Embedding, residual blocks down and up, embedding, per axis."""
        fov = []
        for axis in range(self.ndim):
            r, j = 1, 1
            e = common.per_axis(self.embed_kernel, self.ndim)[axis]
            block = sum(common.per_axis(k, self.ndim)[axis] - 1 for k in self.block_kernels)
            p = common.per_axis(self.pool, self.ndim)[axis]
            r += e - 1
            for _ in range(self.depth):
                r += block * j + (p - 1) * j
                j *= p
            r += block * j
            for _ in range(self.depth):
                j //= p
                r += block * j
            r += e - 1
            fov.append(r)
        return tuple(fov)

    def axis_output_size(self, axis: int, n: int) -> tuple[int | None, str]:
        """Same padding everywhere: any size that the poolings divide.

        Arguments as for :meth:`BaseSpec.axis_output_size`; returns ``(n, "")``, or
        ``(None, reason)`` when the poolings do not divide ``n``.
        """
        total = common.per_axis(self.pool, self.ndim)[axis] ** self.depth
        if n % total:
            return None, f"{n} is not divisible by {total}, the product of the {self.depth} poolings"
        return n, ""


__all__ = ["RSUNetSpec"]
