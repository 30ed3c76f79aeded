"""Relabelling of segmentations: consecutive ids, and ids unique per section."""

import fastremap
import numpy as np

from emkit.targets._checks import check_int, check_seg


def relabel_consecutive(seg, *, start=1):
    """Relabel a label array to consecutive ids, keeping 0 as 0.

    Nonzero labels are renumbered ``start, start + 1, ...`` in increasing order of their
    old value (negative labels included). Labels are renamed, never split: the pieces of
    one label stay one label.

    Args:
        seg: ndarray of any shape, integer or bool labels.
        start: integer >= 1, the first new id.

    Returns:
        Tuple ``(relabelled, mapping)``. ``relabelled`` is an ndarray of the shape of
        ``seg``, with its dtype if the new ids fit (bool becomes uint8), else uint64.
        ``mapping`` is a dict ``{old: new}`` of Python ints for every nonzero label
        present, plus ``0: 0`` (always).

    Example:
        >>> relabelled, mapping = relabel_consecutive(np.array([0, 7, 3, 7]))
        >>> relabelled.tolist(), mapping
        ([0, 2, 1, 2], {0: 0, 3: 1, 7: 2})
    """
    check_seg(seg, ndims=None)
    start = check_int(start, "start", minimum=1)
    if seg.dtype == bool:
        seg = seg.view(np.uint8)
    if seg.size == 0:
        return seg.copy(), {0: 0}
    # fastremap numbers labels by first appearance (fast); reorder that to sorted values.
    by_appearance, appearance_map = fastremap.renumber(
        seg, start=1, preserve_zero=True, in_place=False
    )
    olds = np.fromiter(appearance_map.keys(), dtype=seg.dtype, count=len(appearance_map))
    firsts = np.fromiter(appearance_map.values(), dtype=np.int64, count=len(appearance_map))
    nonzero = olds != 0
    olds, firsts = olds[nonzero], firsts[nonzero]
    order = np.argsort(olds, kind="stable")
    n = olds.size
    fits = n == 0 or start + n - 1 <= np.iinfo(seg.dtype).max
    lookup = np.zeros(n + 1, dtype=seg.dtype if fits else np.uint64)
    lookup[firsts[order]] = np.arange(start, start + n)
    mapping = {0: 0, **{int(old): start + i for i, old in enumerate(olds[order])}}
    return lookup[by_appearance], mapping


def relabel_sections(seg, *, start=1):
    """Relabel each z-section on its own, so that no id is shared between sections.

    Within a section, nonzero labels are renumbered consecutively in increasing order of
    their old value; section ``z`` continues where section ``z - 1`` stopped; 0 stays 0.
    Labels are renamed, never split. Use it where sections were labelled independently
    (2D ground truth) and one id in two sections does not mean one object.

    Args:
        seg: ndarray of shape (Z, Y, X), integer or bool labels.
        start: integer >= 1, the first new id.

    Returns:
        Tuple ``(relabelled, mappings)``: ``relabelled`` is an ndarray of shape
        (Z, Y, X), dtype uint64; ``mappings[z]`` is the dict ``{old: new}`` of section
        ``z`` as :func:`relabel_consecutive` returns it.

    Example:
        >>> relabelled, _ = relabel_sections(np.array([[[5, 0, 5]], [[5, 9, 9]]]))
        >>> relabelled.tolist()
        [[[1, 0, 1]], [[2, 3, 3]]]
    """
    check_seg(seg, ndims=(3,))
    start = check_int(start, "start", minimum=1)
    relabelled = np.zeros(seg.shape, dtype=np.uint64)
    mappings = []
    next_id = start
    for z, section in enumerate(seg):
        relabelled[z], mapping = relabel_consecutive(section, start=next_id)
        mappings.append(mapping)
        next_id += len(mapping) - 1
    return relabelled, mappings
