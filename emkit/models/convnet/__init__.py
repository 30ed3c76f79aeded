"""The ConvNet family: valid convolutions and max-pooling, as in N4, VD2D and VD2D-3D.

One folder holds the family: :mod:`.spec` (the spec and its size formulas),
:mod:`.build` (the Keras builder), :mod:`.dense` (the dense, full-resolution form of a
pooled patch classifier) and :mod:`.presets` (the published architectures). Only the
builder and the dense form import Keras.
"""

from emkit.models.convnet.presets import PRESETS
from emkit.models.convnet.spec import ConvNetSpec, LayerSpec
from emkit.models.spec import Family

#: The family's record in :data:`emkit.models.architectures.FAMILIES`.
FAMILY = Family(spec=ConvNetSpec, builder="emkit.models.convnet.build:build_convnet",
                presets=PRESETS)

__all__ = ["FAMILY", "ConvNetSpec", "LayerSpec"]
