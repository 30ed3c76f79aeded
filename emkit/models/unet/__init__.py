"""The U-Net family (Ronneberger et al. 2015; 3D: Cicek et al. 2016), valid or same-padded.

One folder holds the family: :mod:`.spec` (the spec and its size formulas),
:mod:`.build` (the Keras builder) and :mod:`.presets` (``unet2d``, ``unet3d``). Only
the builder imports Keras.
"""

from emkit.models.spec import Family
from emkit.models.unet.presets import PRESETS
from emkit.models.unet.spec import UNetSpec

#: The family's record in :data:`emkit.models.architectures.FAMILIES`.
FAMILY = Family(spec=UNetSpec, builder="emkit.models.unet.build:build_unet", presets=PRESETS)

__all__ = ["FAMILY", "UNetSpec"]
