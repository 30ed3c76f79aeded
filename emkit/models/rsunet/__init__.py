"""The residual symmetric U-Net family of Lee et al. 2017 (SNEMI3D).

One folder holds the family: :mod:`.spec` (the spec and its size formulas),
:mod:`.build` (the Keras builder) and :mod:`.presets` (``rsunet``). Only the builder
imports Keras.
"""

from emkit.models.rsunet.presets import PRESETS
from emkit.models.rsunet.spec import RSUNetSpec
from emkit.models.spec import Family

#: The family's record in :data:`emkit.models.architectures.FAMILIES`.
FAMILY = Family(spec=RSUNetSpec, builder="emkit.models.rsunet.build:build_rsunet",
                presets=PRESETS)

__all__ = ["FAMILY", "RSUNetSpec"]
