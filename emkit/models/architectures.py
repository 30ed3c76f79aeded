"""The model registry: plain dicts from family name and architecture name to spec.

Each model family lives in one folder (:mod:`emkit.models.convnet`,
:mod:`emkit.models.unet`, :mod:`emkit.models.rsunet`) with its spec, builder and
presets; :data:`FAMILIES` lists them, one line each. ``ARCHITECTURES[name]`` is a
preset spec with the published widths and a training patch size;
:func:`build_model` turns any spec, or a registered name plus overrides, into a Keras
model. This module imports no Keras, so ``emkit model list`` starts fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emkit.errors import InputError
from emkit.models import convnet, rsunet, unet
from emkit.models.spec import Family, Spec, keys_to_spec, replace

#: Family name -> its :class:`~emkit.models.spec.Family`. One line per family.
FAMILIES: dict[str, Family] = {
    "convnet": convnet.FAMILY,
    "unet": unet.FAMILY,
    "rsunet": rsunet.FAMILY,
}

#: Architecture name -> spec: every family's presets.
ARCHITECTURES: dict[str, Spec] = {
    name: spec for family in FAMILIES.values() for name, (spec, _) in family.presets.items()
}

#: Architecture name -> one line for ``emkit model list``.
DESCRIPTIONS: dict[str, str] = {
    name: line for family in FAMILIES.values() for name, (_, line) in family.presets.items()
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
        return keys_to_spec(FAMILIES[family].spec, config)
    raise InputError(
        "model spec: needs 'arch' (a registered architecture) or 'family' "
        f"({', '.join(FAMILIES)}); got keys {sorted(config)}"
    )


def get_spec(name: str, **overrides: Any) -> Spec:
    """The registered spec ``name``, with ``overrides`` applied (e.g. ``out_channels=3``).

    Args:
        name: A name in ``ARCHITECTURES``.
        **overrides: Spec keys to change.
    """
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
    return FAMILIES[spec.family].build(spec)


__all__ = ["ARCHITECTURES", "DESCRIPTIONS", "FAMILIES", "build_model", "dict_to_spec", "get_spec"]
