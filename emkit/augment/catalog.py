"""The augmentations by recipe name: a plain dict, and building a list from recipe entries.

A recipe lists augmentations in the order they run; each entry is a mapping whose
``name`` picks the class and whose other keys are that class's keyword arguments::

    augment:
      - {name: flip}
      - {name: rot90}
      - {name: elastic, p: 0.5, sigma: [2, 6], spacing: 64}
      - {name: brightness_contrast, brightness: [-0.1, 0.1], contrast: [0.9, 1.1]}
      - {name: misalign, p: 0.2, max_shift: 12}

A number is a fixed value and ``[low, high]`` a uniform range. Recommended order:
geometric, elastic, defects that move sections (misalign), then intensity, blur and the
other defects.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

from emkit.augment.base import Augmentation
from emkit.augment.blur import Blur
from emkit.augment.defects import DarkBlotch, Misalign, MissingRegion, MissingSection
from emkit.augment.elastic import Elastic
from emkit.augment.geometric import Flip, Rotate, Rotate90, Transpose
from emkit.augment.intensity import BrightnessContrast, Clahe, Gamma, Noise
from emkit.errors import InputError

# Recipe name -> class. A plain, static dict.
AUGMENTATIONS: dict[str, type[Augmentation]] = {
    "flip": Flip,
    "transpose": Transpose,
    "rot90": Rotate90,
    "rotate": Rotate,
    "elastic": Elastic,
    "brightness_contrast": BrightnessContrast,
    "gamma": Gamma,
    "noise": Noise,
    "clahe": Clahe,
    "blur": Blur,
    "misalign": Misalign,
    "missing_section": MissingSection,
    "missing_region": MissingRegion,
    "dark_blotch": DarkBlotch,
}


def augmentation_keys(name: str) -> list[str]:
    """The recipe keys that augmentation ``name`` accepts (besides ``name``)."""
    parameters = inspect.signature(AUGMENTATIONS[name].__init__).parameters
    return [k for k in parameters if k != "self"]


def make_augmentation(entry) -> Augmentation:
    """One augmentation from a recipe entry such as ``{"name": "flip", "p": 1.0}``.

    A bare string is the name with default keys. An :class:`Augmentation` is returned
    as it is.

    Raises:
        InputError: unknown name, unknown key (named, with the allowed keys), bad value.
    """
    if isinstance(entry, Augmentation):
        return entry
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, Mapping):
        raise InputError(
            f"an augmentation entry must be a mapping with a 'name' key, got {entry!r}"
        )
    entry = dict(entry)
    name = entry.pop("name", None)
    if name not in AUGMENTATIONS:
        raise InputError(
            f"augmentation name {name!r} is unknown; allowed: {', '.join(AUGMENTATIONS)}"
        )
    allowed = augmentation_keys(name)
    for key in entry:
        if key not in allowed:
            raise InputError(
                f"augmentation {name!r}: unknown key {key!r}; allowed: name, {', '.join(allowed)}"
            )
    return AUGMENTATIONS[name](**entry)


def make_augmentations(entries) -> list[Augmentation]:
    """Augmentations from a recipe's list of entries, in order.

    Args:
        entries: a sequence of mappings (``{"name": "elastic", "p": 0.5, ...}``), names,
            or :class:`Augmentation` objects; None means none.

    Returns:
        A list of :class:`Augmentation`.

    >>> [a.name for a in make_augmentations(["flip", {"name": "elastic", "sigma": 3}])]
    ['flip', 'elastic']
    """
    if entries is None:
        return []
    if isinstance(entries, (str, Mapping)) or not hasattr(entries, "__iter__"):
        raise InputError(f"augmentations must be a list of entries, got {entries!r}")
    out = []
    for i, entry in enumerate(entries):
        try:
            out.append(make_augmentation(entry))
        except InputError as exc:
            raise InputError(f"augment[{i}]: {exc}") from None
    return out
