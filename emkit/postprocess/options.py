"""The options of affinity segmentation, their defaults and their checks, in one place.

:func:`~emkit.postprocess.segment_affinities`, :func:`emkit.blockwise.segment_blockwise`
and ``emkit segment`` take the same options: the watershed's (:data:`WATERSHED_OPTIONS`,
see :func:`~emkit.postprocess.affinity_watershed` for what they do and why these
defaults) and the agglomeration's (:data:`AGGLOMERATION_OPTIONS`, see
:mod:`~emkit.postprocess.agglomeration`). :class:`SegmentOptions` holds them, with the
defaults; :meth:`SegmentOptions.checked` checks a set of them; :func:`takes_options`
gives a function that takes them as ``**options`` their signature (keywords, defaults),
so that :func:`inspect.signature` (recipes, the tuner) sees them as before.

Importing this module imports only the standard library: the command line's parser
reads the defaults and choices from here without loading the numba stages (see
``emkit.cli.segment``). The checks import those when they run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

#: Edge scores of the agglomeration: ``1 -`` the mean or a quantile of the boundary.
SCORINGS = ("mean", "quantile")
#: Options of the watershed with size-dependent merging, in signature order.
WATERSHED_OPTIONS = ("low", "high", "size_threshold", "merge_threshold", "dust_size")
#: Options of the agglomeration, in signature order.
AGGLOMERATION_OPTIONS = ("thresholds", "scoring", "quantile", "bins")


@dataclass(frozen=True)
class SegmentOptions:
    """The options of affinity segmentation; the field defaults are the library's.

    Attributes:
        thresholds: Agglomeration score thresholds in [0, 1], as waterz's: ``t`` merges
            two regions while the mean (or quantile) affinity of their boundary exceeds
            ``1 - t``; larger thresholds merge more. One segmentation per threshold.
        scoring: ``"mean"`` or ``"quantile"`` (:data:`SCORINGS`).
        quantile: The quantile for ``scoring="quantile"`` (0.5 = the median).
        bins: Histogram bins per edge for ``scoring="quantile"`` (exact to 1 / bins).
        low: Watershed: edges with affinity ``<= low`` are cut.
        high: Watershed: edges with affinity ``>= high`` always join.
        size_threshold: Watershed: regions with fewer voxels merge along strong edges.
        merge_threshold: Watershed: the least affinity of an edge for those merges.
        dust_size: Regions with fewer voxels become 0 (0 keeps all). In memory the
            watershed's fragments are dusted, before agglomeration; blockwise, whole
            objects are, after it (:func:`emkit.blockwise.segment_blockwise` says why).
    """

    thresholds: tuple[float, ...] = (0.5,)
    scoring: str = "mean"
    quantile: float = 0.5
    bins: int = 64
    low: float = 0.0001
    high: float = 0.9999
    size_threshold: int = 25
    merge_threshold: float = 0.5
    dust_size: int = 0

    @classmethod
    def checked(cls, **options) -> SegmentOptions:
        """The options given (the defaults for the others), checked.

        Args:
            **options: Any of the fields, by name.

        Returns:
            A :class:`SegmentOptions` with ``thresholds`` a tuple of floats in the order
            given, and every value of its field's type.

        Raises:
            InputError: an unknown option (the message lists the allowed ones), or a
                value out of range (the message names the option).
        """
        from emkit.errors import InputError
        from emkit.postprocess._checks import check_thresholds

        unknown = sorted(set(options) - set(NAMES))
        if unknown:
            raise InputError(f"unknown segmentation option(s) {unknown}; allowed: "
                             f"{', '.join(NAMES)}")
        given = {**asdict(DEFAULTS), **options}
        quantile, bins = check_scoring(given["scoring"], given["quantile"], given["bins"])
        watershed = check_watershed_options(*(given[k] for k in WATERSHED_OPTIONS))
        return cls(thresholds=check_thresholds(given["thresholds"]), scoring=given["scoring"],
                   quantile=quantile, bins=bins, **dict(zip(WATERSHED_OPTIONS, watershed)))

    @property
    def watershed(self) -> dict:
        """The watershed options, ``{name: value}`` (:data:`WATERSHED_OPTIONS`)."""
        return {name: getattr(self, name) for name in WATERSHED_OPTIONS}

    @property
    def histogram_bins(self) -> int:
        """Histogram bins per region-graph edge: ``bins`` for quantile scoring, else 0."""
        return self.bins if self.scoring == "quantile" else 0

    def to_dict(self) -> dict:
        """The options as plain JSON values (``thresholds`` a list)."""
        plain = asdict(self)
        plain["thresholds"] = list(self.thresholds)
        return plain


#: The defaults.
DEFAULTS = SegmentOptions()
#: Every option, in signature order.
NAMES = tuple(f.name for f in fields(SegmentOptions))


def check_watershed_options(low, high, size_threshold, merge_threshold, dust_size):
    """The watershed options, checked.

    Args:
        low, high: Floats in [0, 1], ``low < high``.
        size_threshold, merge_threshold, dust_size: An int >= 0, a float in [0, 1], an
            int >= 0.

    Returns:
        ``(low, high, size_threshold, merge_threshold, dust_size)`` as floats and ints.

    Raises:
        InputError: a value out of range; the message names the option.
    """
    from emkit.errors import InputError
    from emkit.postprocess._checks import check_size, check_unit_float

    low = check_unit_float(low, "low")
    high = check_unit_float(high, "high")
    if not low < high:
        raise InputError(f"low must be smaller than high, got low={low}, high={high}")
    return (
        low,
        high,
        check_size(size_threshold, "size_threshold"),
        check_unit_float(merge_threshold, "merge_threshold"),
        check_size(dust_size, "dust_size"),
    )


def takes_options(function):
    """Decorator: ``function(..., **options)`` gets the options in its signature.

    The function's ``__signature__`` lists the options of :class:`SegmentOptions` as
    keyword-only parameters with their defaults, in place of ``**options``, so that
    :func:`inspect.signature` and :func:`help` show them. The function itself checks
    what it receives (:meth:`SegmentOptions.checked`).

    Args:
        function: A function with a ``**options`` parameter.

    Returns:
        ``function``, with ``__signature__`` set.
    """
    import inspect

    signature = inspect.signature(function)
    kept = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                               default=getattr(DEFAULTS, name)) for name in NAMES]
    function.__signature__ = signature.replace(parameters=kept + added)
    return function


def threshold_outputs(template: str, thresholds, name: str = "--output") -> list[str]:
    """One output spec per threshold, from a template with ``{threshold}``.

    ``{threshold}`` is replaced by each value (``f"{t:g}"``); one threshold may go
    to a spec without it.

    Args:
        template: The output spec, with ``{threshold}`` where each value goes.
        thresholds: The agglomeration thresholds.
        name: The option or argument, for messages.

    Returns:
        The specs, in the order of ``thresholds``.

    Raises:
        InputError: several thresholds and no ``{threshold}`` in ``template``, or two
            thresholds that give one spec.

    >>> threshold_outputs("seg.h5:seg/{threshold}", (0.3, 0.5))
    ['seg.h5:seg/0.3', 'seg.h5:seg/0.5']
    """
    from emkit.errors import InputError

    template = str(template)
    if len(thresholds) > 1 and "{threshold}" not in template:
        raise InputError(
            f"{name} {template!r} names one volume but {len(thresholds)} thresholds were "
            "given; put {threshold} in it, e.g. seg.h5:seg/{threshold}"
        )
    specs = [template.replace("{threshold}", f"{t:g}") for t in thresholds]
    if len(set(specs)) < len(specs):
        raise InputError(f"thresholds {list(thresholds)} repeat a value: each gives one "
                         f"output of {name} {template!r}")
    return specs


def check_stored_affinities(shape, name: str) -> None:
    """Refuse an affinity volume that is not stored channels first with 3+ channels.

    Affinities are stored ``(c, z, y, x)`` on disk (as waterz, gunpowder and neuroglancer
    read them); channels last, ``(z, y, x, 3)``, would be read as c = z and an x of 3
    voxels.

    Args:
        shape: the stored shape, 4 axes.
        name: the volume, for the message (e.g. ``"INPUT 'pred.h5:affs'"``).
    """
    from emkit.errors import InputError

    shape = tuple(shape)
    channels_last = shape[-1] == 3 and shape[0] != 3
    if shape[0] < 3 or channels_last:
        hint = (
            "; its last axis holds 3, so it looks channels last (z, y, x, c): store it "
            "channels first" if channels_last else f"; got {shape[0]} channel(s)"
        )
        raise InputError(
            f"{name} has shape {shape}: affinities must be stored channels first "
            f"(c, z, y, x) with at least 3 channels, offsets (1,0,0), (0,1,0), (0,0,1){hint}"
        )


def check_scoring(scoring, quantile, bins) -> tuple[float, int]:
    """The agglomeration's scoring options, checked.

    Args:
        scoring: ``"mean"`` or ``"quantile"``.
        quantile: the quantile in [0, 1], for ``"quantile"``.
        bins: histogram bins per edge, 1 to 65536 for ``"quantile"``.

    Returns:
        ``(quantile, bins)`` as float and int.
    """
    from emkit.errors import InputError
    from emkit.postprocess._checks import check_size, check_unit_float

    if scoring not in SCORINGS:
        raise InputError(f"scoring must be one of {list(SCORINGS)}, got {scoring!r}")
    quantile = check_unit_float(quantile, "quantile")
    bins = check_size(bins, "bins")
    if scoring == "quantile" and not 1 <= bins <= 65536:
        raise InputError(f"bins must be in 1..65536 for quantile scoring, got {bins}")
    return quantile, bins


__all__ = ["AGGLOMERATION_OPTIONS", "DEFAULTS", "NAMES", "SCORINGS", "WATERSHED_OPTIONS",
           "SegmentOptions", "check_scoring", "check_stored_affinities", "check_watershed_options", "takes_options", "threshold_outputs"]
