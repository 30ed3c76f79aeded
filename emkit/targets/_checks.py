"""Input checks shared by the target conversions; each error names the argument."""

import numpy as np

from emkit.errors import InputError


def check_array(arr, name, *, ndims, kinds, kinds_text):
    """Raise InputError unless ``arr`` is an ndarray of one of ``ndims`` and dtype ``kinds``.

    Args:
        arr: the value to check.
        name: the argument's name, for the message.
        ndims: the allowed numbers of axes, or None for any.
        kinds: the allowed ``dtype.kind`` letters, e.g. ``"biu"``.
        kinds_text: the allowed dtypes in words, for the message.

    Returns:
        ``arr``.
    """
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{name} must be a numpy ndarray, got {type(arr).__name__}")
    if ndims is not None and arr.ndim not in ndims:
        allowed = " or ".join(f"{n}D" for n in ndims)
        raise InputError(f"{name} must be {allowed}, got shape {arr.shape} ({arr.ndim}D)")
    if arr.dtype.kind not in kinds:
        raise InputError(
            f"{name} must have {kinds_text} dtype, got {arr.dtype} (shape {arr.shape})"
        )
    return arr


def check_seg(seg, name="seg", *, ndims=(2, 3)):
    """Raise InputError unless ``seg`` is an integer or bool label array of ``ndims``.

    Args:
        seg: the value to check.
        name: the argument's name, for the message.
        ndims: the allowed numbers of axes.

    Returns:
        ``seg``.
    """
    return check_array(seg, name, ndims=ndims, kinds="biu", kinds_text="an integer or bool")


def check_int(value, name, *, minimum):
    """Return ``value`` as int, or raise InputError unless it is an integer >= minimum.

    Args:
        value: the value to check (a bool is refused).
        name: the argument's name, for the message.
        minimum: the smallest allowed value.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
