"""The U-Net presets: the original 2D U-Net and an anisotropic 3D U-Net."""

from __future__ import annotations

from emkit.models.unet.spec import UNetSpec

# The original U-Net (Ronneberger et al. 2015): valid 3x3 convs, 64 maps doubling
# over 4 poolings, 2x2 up-convolutions, 572x572 -> 388x388.
UNET2D = UNetSpec(name="unet2d", ndim=2, depth=4, base_filters=64, padding="valid", pool=2,
                  upsample="transpose", out_channels=1, input_shape=(572, 572))

# A 3D U-Net for anisotropic serial-section EM: same-padded 3x3x3 convs, 16 maps
# doubling over 3 in-plane (1, 2, 2) poolings, nearest-neighbour affinities.
UNET3D = UNetSpec(name="unet3d", ndim=3, depth=3, base_filters=16, padding="same",
                  pool=(1, 2, 2), upsample="transpose", out_channels=3,
                  input_shape=(16, 128, 128))


#: Name -> (spec, one line for ``emkit model list``).
PRESETS = {
    "unet2d": (UNET2D, "U-Net (Ronneberger et al. 2015), valid convs, 2D boundaries"),
    "unet3d": (UNET3D, "anisotropic 3D U-Net, same convs, (1,2,2) pooling, 3D affinities"),
}
