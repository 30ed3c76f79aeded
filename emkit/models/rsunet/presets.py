"""The residual symmetric U-Net preset of Lee et al. 2017."""

from __future__ import annotations

from emkit.models.rsunet.spec import RSUNetSpec

# The residual symmetric U-Net of Lee et al. 2017 (SNEMI3D), 18x160x160 patches.
RSUNET = RSUNetSpec(name="rsunet", input_shape=(18, 160, 160))


#: Name -> (spec, one line for ``emkit model list``).
PRESETS = {
    "rsunet": (RSUNET, "residual symmetric U-Net (Lee et al. 2017, SNEMI3D), 3D affinities"),
}
