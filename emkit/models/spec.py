"""What every architecture spec shares: the base class, the family record, the checks.

A spec says what a network is: a small frozen dataclass whose fields map 1:1 to YAML
keys. Each model family (:mod:`emkit.models.convnet`, :mod:`emkit.models.unet`,
:mod:`emkit.models.rsunet`) defines its spec class on :class:`BaseSpec`, with the
closed formulas of its field of view and output size, and a :class:`Family` record
that names its builder and presets. A builder turns a spec into a Keras model, and
:mod:`emkit.models.shapes` computes the field of view and valid sizes without building
anything. Specs are plain data: they hold no Keras objects and import nothing heavy.

A recipe writes a spec either from a registered architecture plus overrides::

    model:
      arch: n4            # a name from emkit.models.architectures.ARCHITECTURES
      out_channels: 3

or from a family (``family: convnet``) with every key explicit, as each family's
``spec.py`` shows.

Sizes (kernels, pooling windows, strides) are an int for every axis or a list
with one int per axis, in ``(z, y, x)`` order. Unknown keys are errors that name
the key and list the allowed ones.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from emkit.errors import InputError
from emkit.io.plain import to_plain

ACTIVATIONS = ("relu", "elu", "tanh", "leaky_relu", "gelu", "silu", "linear")
PADDINGS = ("valid", "same")
UPSAMPLE_MODES = ("transpose", "nearest")
MERGE_MODES = ("concat", "add")


# --------------------------------------------------------------------------- helpers


def canonical_size(value: Any, ndim: int, key: str, *, minimum: int = 1) -> int | tuple[int, ...]:
    """An int if the size is the same on every axis, else a tuple with one int per axis.

    Args:
        value: an int (every axis) or a list or tuple of ``ndim`` ints.
        ndim: the number of axes.
        key: the spec key, for the error message.
        minimum: the smallest allowed size.

    Raises:
        InputError: ``value`` is not of that form, or a size is below ``minimum``.
    """
    if isinstance(value, bool):
        raise InputError(f"{key}: expected an int or a list of {ndim} ints, got {value!r}")
    if isinstance(value, int):
        sizes = (value,) * ndim
    elif isinstance(value, (list, tuple)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        if len(value) != ndim:
            raise InputError(
                f"{key}: expected {ndim} sizes (one per axis of a {ndim}D network), "
                f"got {list(value)}"
            )
        sizes = tuple(value)
    else:
        raise InputError(f"{key}: expected an int or a list of {ndim} ints, got {value!r}")
    if any(v < minimum for v in sizes):
        raise InputError(f"{key}: sizes must be >= {minimum}, got {list(sizes)}")
    return sizes[0] if len(set(sizes)) == 1 else sizes


def per_axis(value: int | tuple[int, ...], ndim: int) -> tuple[int, ...]:
    """Expand a canonical size (int or per-axis tuple) to one int per axis.

    Args:
        value: an int (every axis) or one int per axis.
        ndim: the number of axes.
    """
    return (value,) * ndim if isinstance(value, int) else tuple(value)


def check_choice(value: Any, allowed: tuple[str, ...], key: str) -> None:
    """Raises InputError naming ``key`` unless ``value`` is one of ``allowed``.

    Args:
        value: the value to check.
        allowed: the allowed values.
        key: the spec key, for the error message.
    """
    if value not in allowed:
        raise InputError(f"{key}: got {value!r}; allowed: {', '.join(map(str, allowed))}")


def check_int(value: Any, key: str, *, minimum: int = 1) -> None:
    """Raises InputError naming ``key`` unless ``value`` is an int >= ``minimum`` (not a bool).

    Args:
        value: the value to check.
        key: the spec key, for the error message.
        minimum: the smallest allowed value.
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InputError(f"{key}: expected an int >= {minimum}, got {value!r}")


def check_bool(value: Any, key: str) -> None:
    """Raises InputError naming ``key`` unless ``value`` is a bool.

    Args:
        value: the value to check.
        key: the spec key, for the error message.
    """
    if not isinstance(value, bool):
        raise InputError(f"{key}: expected true or false, got {value!r}")


def canonical_input_shape(value: Any, ndim: int) -> tuple[int, ...] | None:
    """A spec's ``input_shape`` as a tuple, or None.

    Args:
        value: None, or a list or tuple of ``ndim`` positive ints (the spatial size).
        ndim: 2 (``(y, x)``) or 3 (``(z, y, x)``).

    Raises:
        InputError: ``value`` is neither.
    """
    if value is None:
        return None
    if (
        not isinstance(value, (list, tuple))
        or len(value) != ndim
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise InputError(
            f"input_shape: expected {ndim} positive ints (spatial size, "
            f"{'(z, y, x)' if ndim == 3 else '(y, x)'}) or null, got {value!r}"
        )
    return tuple(value)


def set_field(obj: Any, name: str, value: Any) -> None:
    """Set a field of a frozen dataclass (from its ``__post_init__``).

    Args:
        obj: the dataclass instance.
        name: the field's name.
        value: its new value.
    """
    object.__setattr__(obj, name, value)



# --------------------------------------------------------------------------- base and family


class BaseSpec:
    """The base of every family's spec dataclass.

    A family's spec sets the class variable ``family`` (its name) and the fields
    ``name``, ``ndim``, ``in_channels``, ``out_channels`` and ``input_shape``, and gives
    the closed formulas that :mod:`emkit.models.shapes` asks of a spec.
    """

    family: ClassVar[str] = ""

    def check_shared_fields(self) -> None:
        """Check the fields every family has (channels, activation, residual, batch norm)
        and canonicalize ``input_shape``; a family's ``__post_init__`` calls it."""
        check_int(self.in_channels, "in_channels")
        check_int(self.out_channels, "out_channels")
        check_choice(self.activation, ACTIVATIONS, "activation")
        check_bool(self.residual, "residual")
        check_bool(self.batch_norm, "batch_norm")
        set_field(self, "input_shape", canonical_input_shape(self.input_shape, self.ndim))

    def field_of_view(self) -> tuple[int, ...]:
        """Input voxels that can influence one output voxel, per spatial axis."""
        raise NotImplementedError(f"{type(self).__name__} gives no field_of_view formula")

    def axis_output_size(self, axis: int, n: int) -> tuple[int | None, str]:
        """Output size on ``axis`` for ``n`` input voxels, or ``(None, reason)`` when
        ``n`` is not a valid size on that axis.

        Args:
            axis: the spatial axis, 0 to ``ndim - 1`` (``(z, y, x)`` or ``(y, x)`` order).
            n: the input size on that axis, in voxels.

        Returns:
            ``(size, "")`` for a valid ``n``, else ``(None, reason)``.
        """
        raise NotImplementedError(f"{type(self).__name__} gives no axis_output_size formula")

    def output_stride(self) -> tuple[int, ...]:
        """Input voxels between neighbouring output voxels, per axis (1: dense)."""
        return (1,) * self.ndim


#: Any family's spec.
Spec = BaseSpec


@dataclass(frozen=True)
class Family:
    """A model family: its spec class, its Keras builder, and its named presets.

    Attributes:
        spec: The spec class (a dataclass on :class:`BaseSpec`); ``spec.family`` is
            the family's name, the ``family:`` a recipe writes.
        builder: ``"module:function"`` of the builder, imported when first used (it
            imports Keras; the spec and the presets do not).
        presets: Registered architecture name -> ``(spec, one line for emkit model
            list)``.
    """

    spec: type
    builder: str
    presets: Mapping[str, tuple[BaseSpec, str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The family's name, ``spec.family``."""
        return self.spec.family

    def build(self, spec: BaseSpec):
        """A Keras model from ``spec``, by this family's builder."""
        module_name, function_name = self.builder.split(":")
        return getattr(importlib.import_module(module_name), function_name)(spec)


# --------------------------------------------------------------------------- dict <-> spec

def spec_fields(cls: type) -> list[str]:
    """The YAML keys of a spec class, in order."""
    return [f.name for f in dataclasses.fields(cls)]


def keys_to_spec(cls: type, config: Mapping[str, Any], *, base: Spec | None = None) -> Spec:
    """A spec of class ``cls`` from the keys a recipe writes, over ``base`` when given.

    Args:
        cls: the spec class (a family's).
        config: its keys; ``family`` may be given and must be ``cls.family``.
        base: a registered architecture's spec to start from (its class is ``cls``).

    Raises:
        InputError: a key that ``cls`` does not have, or another family.

    >>> from emkit.models.unet.spec import UNetSpec
    >>> keys_to_spec(UNetSpec, {"depth": 2}).depth
    2
    """
    config = dict(config)
    family = config.pop("family", cls.family)
    if family != cls.family:
        raise InputError(f"family: expected {cls.family!r} here, got {family!r}")
    allowed = spec_fields(cls)
    for key in config:
        if key not in allowed:
            raise InputError(
                f"unknown key {key!r} for a {cls.family} spec; allowed: arch, family, {', '.join(allowed)}"
            )
    if base is not None:
        return dataclasses.replace(base, **config)
    return cls(**config)


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """The mapping that :func:`emkit.models.architectures.dict_to_spec` turns back into ``spec``
    (YAML-ready)."""
    out: dict[str, Any] = {"family": spec.family}
    for key in spec_fields(type(spec)):
        value = getattr(spec, key)
        if isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            value = [  # e.g. a convnet's layers: their keys, None left out
                {k: to_plain(v) for k, v in dataclasses.asdict(item).items() if v is not None}
                for item in value
            ]
        out[key] = to_plain(value)
    return out


def replace(spec: Spec, **changes: Any) -> Spec:
    """``dataclasses.replace`` for specs, with unknown keys reported as InputError.

    Args:
        spec: the spec to copy.
        **changes: the fields to change.
    """
    allowed = spec_fields(type(spec))
    for key in changes:
        if key not in allowed:
            raise InputError(
                f"unknown key {key!r} for a {spec.family} spec; allowed: {', '.join(allowed)}"
            )
    return dataclasses.replace(spec, **changes)


def resolve_spec(spec: Spec | Mapping | None, cls: type, overrides: Mapping[str, Any]) -> Spec:
    """The spec a builder works from: a spec, a mapping of its keys, or keyword arguments.

    Args:
        spec: A ``cls`` instance, a mapping of its keys, or ``None``.
        cls: The spec class the builder needs.
        overrides: Keys to set on top (the builder's ``**kwargs``).
    """
    if spec is None:
        spec = keys_to_spec(cls, overrides)
        overrides = {}
    elif isinstance(spec, Mapping):
        spec = keys_to_spec(cls, spec)
    if not isinstance(spec, cls):
        raise InputError(
            f"spec: this builder needs a {cls.__name__} (family {cls.family!r}), "
            f"got {type(spec).__name__}"
        )
    return replace(spec, **overrides) if overrides else spec


__all__ = [
    "BaseSpec",
    "Family",
    "Spec",
    "canonical_input_shape",
    "canonical_size",
    "check_bool",
    "check_choice",
    "check_int",
    "keys_to_spec",
    "per_axis",
    "replace",
    "resolve_spec",
    "set_field",
    "spec_fields",
    "spec_to_dict",
]
