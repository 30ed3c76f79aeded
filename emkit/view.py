"""Volumes in neuroglancer, served from local files on 127.0.0.1 (``emkit view``).

The only module that imports neuroglancer, and only inside :func:`serve`. Each volume
becomes one layer of a kind read from its shape and dtype (see :func:`guess_kind`), or
given:

- ``image``: ``(z, y, x)`` EM images, boundary maps, any numbers; grey.
- ``affinities``: ``(c, z, y, x)`` channels first as emkit writes them (c >= 2), float
  or uint8; channels 0-2 (offsets z, y, x) shown as red, green, blue.
- ``segmentation``: ``(z, y, x)`` integer labels; a colour per id, 0 transparent.

Nothing is read when the viewer starts (but for a crop of one section of a non-uint8
image, to set its contrast): each layer is an :class:`~emkit.io.Volume`, and the server
reads only the boxes that the browser asks for (HDF5, Zarr: the chunks they touch). The
voxel size and offset come from the files (``resolution``, ``offset``); a volume without
one borrows the voxel size of a layer of the same ``(z, y, x)`` shape.

>>> guess_kind((5, 512, 512), "uint8"), guess_kind((5, 512, 512), "uint64")
('image', 'segmentation')
>>> guess_kind((3, 5, 512, 512), "float32")
'affinities'
>>> view_command("raw.h5:raw", "pred dir/pred.h5:affs")
"emkit view raw.h5:raw 'pred dir/pred.h5:affs'"
"""

from __future__ import annotations

import shlex
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from emkit.errors import InputError
from emkit.io import Volume, open_volume

KINDS = ("image", "affinities", "segmentation")

#: Segmentations up to this size get 3D meshes (the mesh of an id needs the whole volume
#: in memory); larger ones are shown in the 2D panels only.
MESH_MAX_BYTES = 256 * 2**20

#: The largest (y, x) crop of the middle section read to set a non-uint8 image's contrast.
CONTRAST_CROP = 512

# The dtypes neuroglancer displays, and what the others are served as.
_IMAGE_DTYPES = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32"}
_LABEL_DTYPES = {"uint8", "uint16", "uint32", "uint64"}
_AFFINITY_SHADER = """\
void main() {
  emitRGB(vec3(toNormalized(getDataValue(0)),
               toNormalized(getDataValue(1)),
               %s));
}
"""


@dataclass(frozen=True)
class Layer:
    """One volume as a neuroglancer layer.

    Attributes:
        name: the layer's name (the key's last part or the file's stem, unique).
        kind: ``"image"``, ``"affinities"`` or ``"segmentation"``.
        volume: the lazy volume the server reads from.
        voxel_size_nm: (z, y, x) in nm.
        voxel_offset: (z, y, x) in voxels, where voxel (0, 0, 0) lies.
        note: how the voxel size was found when the file has none, else None.
    """

    name: str
    kind: str
    volume: Volume
    voxel_size_nm: tuple[float, float, float]
    voxel_offset: tuple[int, int, int]
    note: str | None = None

    def describe(self, name_width: int = 0) -> str:
        """One line: name, kind, spec, shape, dtype, voxel size.

        Args:
            name_width: the name is padded to this many characters (to align lines).

        Returns:
            e.g. ``"raw  image         raw.h5:raw  (5, 23, 19) uint8  40 x 4 x 4 nm"``.
        """
        size = " x ".join(f"{v:g}" for v in self.voxel_size_nm)
        extra = ""
        if self.kind == "affinities":
            extra = f"  (channels 0-{min(self.volume.shape[0], 3) - 1} as RGB)"
        return (f"{self.name:<{name_width}}  {self.kind:<12}  {self.volume.spec}  "
                f"{self.volume.shape} {self.volume.dtype}  {size} nm{extra}")


def guess_kind(shape: Sequence[int], dtype) -> str:
    """The layer kind that a volume's shape and dtype suggest.

    Args:
        shape: the stored shape.
        dtype: the stored dtype.

    Returns:
        ``"affinities"`` for 4D ``(c, z, y, x)``; for 3D, ``"segmentation"`` when the
        dtype is a 32- or 64-bit integer (label ids), else ``"image"`` (uint8 and uint16
        EM images, float maps). Other shapes are refused later by :func:`plan_layers`.
    """
    dtype = np.dtype(dtype)
    if len(shape) == 4:
        return "affinities"
    if dtype.kind in "iu" and dtype.itemsize >= 4:
        return "segmentation"
    return "image"


def plan_layers(items: Sequence[tuple[str | None, str]]) -> list[Layer]:
    """Opens the volumes (headers only) and checks that each can be shown as its kind.

    Args:
        items: ``(kind, spec)`` pairs in layer order; kind None: :func:`guess_kind`.

    Returns:
        One :class:`Layer` per item.

    Raises:
        MissingDataError: a file or key does not exist.
        InputError: a volume has a shape or dtype its kind cannot show, e.g. 2D, or 4D
            with one channel.
    """
    if not items:
        raise InputError("no volumes to show; name at least one, e.g. raw.h5:raw")
    opened = []
    for kind, spec in items:
        if kind is not None and kind not in KINDS:
            raise InputError(f"layer kind {kind!r} for '{spec}': expected one of {KINDS}")
        volume = open_volume(spec)
        if kind is None and volume.ndim not in (3, 4):
            raise InputError(
                f"'{volume.spec}' has shape {volume.shape}: expected a 3D (z, y, x) image "
                "or segmentation, or 4D (c, z, y, x) affinities"
                + ("; a single section must be stored as (1, y, x)" if volume.ndim == 2
                   else ""))
        kind = kind or guess_kind(volume.shape, volume.dtype)
        _check(volume, kind)
        opened.append((kind, volume))
    names = [_short_name(v) for _, v in opened]
    names = [n if names.count(n) == 1 else v.spec for n, (_, v) in zip(names, opened)]
    names = [n if names[:i].count(n) == 0 else f"{n} ({names[:i].count(n) + 1})"
             for i, n in enumerate(names)]  # the same volume twice
    layers = []
    for name, (kind, volume) in zip(names, opened):
        size, note = _voxel_size(volume, [v for _, v in opened])
        layers.append(Layer(name, kind, volume, size, _voxel_offset(volume, size), note))
    return layers


def _check(volume: Volume, kind: str) -> None:
    shape, dtype, spec = volume.shape, volume.dtype, volume.spec
    if dtype.kind not in "biuf":
        raise InputError(f"'{spec}' has dtype {dtype}; expected numbers to view")
    if kind == "affinities":
        channels_last = len(shape) == 4 and shape[-1] in (2, 3) and shape[0] not in (2, 3)
        if len(shape) != 4 or shape[0] < 2 or channels_last:
            hint = ("; its last axis looks like channels (z, y, x, c): store it channels "
                    "first" if channels_last else "")
            raise InputError(
                f"'{spec}' has shape {shape}: affinities must be 4D (c, z, y, x), channels "
                f"first, with 2 or more channels{hint}; a (z, y, x) volume is an image or a "
                "segmentation")
        if dtype.kind != "f" and dtype != np.uint8:
            raise InputError(f"affinities '{spec}' have dtype {dtype}; expected floats in "
                             "[0, 1] or uint8 (0-255)")
        return
    if len(shape) != 3:
        what = ("; 4D volumes are shown as affinities (c, z, y, x)" if len(shape) == 4
                else "; a single section must be stored as (1, y, x)" if len(shape) == 2
                else "")
        raise InputError(f"'{spec}' has shape {shape}: {'an' if kind == 'image' else 'a'} {kind} layer needs a 3D (z, y, x) "
                         f"volume{what}")
    if kind == "segmentation" and dtype.kind not in "biu":
        raise InputError(f"segmentation '{spec}' has dtype {dtype}; expected integer "
                         "label ids (view a float map as --image)")


def _short_name(volume: Volume) -> str:
    return volume.key.rsplit("/", 1)[-1] if volume.key else volume.path.stem


def _voxel_size(volume: Volume, others: list[Volume]) -> tuple[tuple[float, ...], str | None]:
    """The volume's voxel size, else a same-shaped volume's, else 1 nm (with a note)."""
    if volume.voxel_size_nm is not None and len(volume.voxel_size_nm) == 3:
        return tuple(float(v) for v in volume.voxel_size_nm), None
    spatial = volume.shape[-3:]
    for other in others:
        if (other is not volume and other.shape[-3:] == spatial
                and other.voxel_size_nm is not None and len(other.voxel_size_nm) == 3):
            return (tuple(float(v) for v in other.voxel_size_nm),
                    f"'{volume.spec}' has no voxel size; using that of '{other.spec}'")
    return (1.0, 1.0, 1.0), f"'{volume.spec}' has no voxel size; shown at 1 nm per voxel"


def _voxel_offset(volume: Volume, size) -> tuple[int, int, int]:
    """The stored offset (nm) in voxels, rounded to whole voxels."""
    if volume.offset_nm is None or len(volume.offset_nm) != 3:
        return (0, 0, 0)
    return tuple(round(o / s) for o, s in zip(volume.offset_nm, size))


class ServedArray:
    """A volume as neuroglancer's ``LocalVolume`` reads it: crops read on demand.

    Each index reads only its box from the file (see :class:`~emkit.io.Volume`), cast to
    a dtype that neuroglancer displays (float16 and float64 to float32, bool to uint8,
    signed labels to unsigned).

    Args:
        volume: the stored volume.
        kind: the layer kind, which decides the served dtype.
    """

    def __init__(self, volume: Volume, kind: str):
        self.volume = volume
        self.shape = volume.shape
        self.dtype = served_dtype(volume.dtype, kind)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __getitem__(self, index) -> np.ndarray:
        return np.asarray(self.volume[index]).astype(self.dtype, copy=False)

    def transpose(self) -> np.ndarray:
        """The whole volume, axes reversed: what neuroglancer's mesh generator reads."""
        return self[...].transpose()


def served_dtype(dtype, kind: str) -> np.dtype:
    """The dtype a volume is served as: one that neuroglancer displays.

    Args:
        dtype: the stored dtype.
        kind: the layer kind.

    Returns:
        The dtype itself when neuroglancer has it, else the nearest one it has.

    >>> served_dtype("float64", "image"), served_dtype("int64", "segmentation")
    (dtype('float32'), dtype('uint64'))
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    if kind == "segmentation":
        if dtype.name in _LABEL_DTYPES:
            return dtype
        return np.dtype(np.uint64 if dtype.itemsize == 8 else np.uint32)
    if dtype.name in _IMAGE_DTYPES:
        return dtype
    return np.dtype(np.float32)


def contrast_range(volume: Volume) -> tuple[float, float] | None:
    """The grey range of an image layer, from a crop of its middle section.

    Args:
        volume: a 3D volume.

    Returns:
        None for uint8 (neuroglancer's default, 0-255, fits); (0, 1) for bool and for
        floats within [0, 1] (probability maps); else the 0.5 and 99.5 percentiles of a
        central crop of at most :data:`CONTRAST_CROP` pixels square of the middle section.
    """
    if volume.dtype == np.uint8:
        return None
    if volume.dtype.kind == "b" or 0 in volume.shape:
        return (0.0, 1.0)
    z, height, width = volume.shape[0] // 2, volume.shape[1], volume.shape[2]
    y0, x0 = max(0, (height - CONTRAST_CROP) // 2), max(0, (width - CONTRAST_CROP) // 2)
    crop = np.asarray(volume[z, y0:y0 + CONTRAST_CROP, x0:x0 + CONTRAST_CROP], np.float64)
    crop = crop[np.isfinite(crop)]
    if crop.size == 0:
        return None
    lo, hi = (float(v) for v in np.percentile(crop, [0.5, 99.5]))
    if volume.dtype.kind == "f" and crop.min() >= 0 and crop.max() <= 1:
        return (0.0, 1.0)
    return (lo, hi if hi > lo else lo + 1)


@contextmanager
def serve(layers: Sequence[Layer], *, port: int = 0, host: str = "127.0.0.1") -> Iterator:
    """Serves the layers in a neuroglancer viewer until the block ends.

    One viewer server runs per process: one that runs already is stopped first.

    Args:
        layers: from :func:`plan_layers`.
        port: the port; 0 lets the system choose a free one.
        host: the address to bind; the default serves this machine only.

    Yields:
        The ``neuroglancer.Viewer``; ``viewer.get_viewer_url()`` is its address, and it
        answers when the block starts.

    Raises:
        InputError: the port cannot be bound (in use, or not allowed).
    """
    if not layers:
        raise InputError("no volumes to show; name at least one, e.g. raw.h5:raw")
    import neuroglancer
    import neuroglancer.local_volume

    class LazyVolume(neuroglancer.LocalVolume):
        """A LocalVolume that builds meshes only for segmentations that fit in memory."""

        def get_object_mesh(self, object_id):
            if self.data.nbytes > MESH_MAX_BYTES:
                raise neuroglancer.local_volume.MeshesNotSupportedForVolume()
            return super().get_object_mesh(object_id)

    if neuroglancer.server.is_server_running():
        neuroglancer.stop()
    neuroglancer.set_server_bind_address(host, port)
    try:
        viewer = neuroglancer.Viewer()
    except OSError as exc:
        raise InputError(f"cannot serve on {host}:{port}: {exc.strerror or exc}; choose "
                         "another port") from exc
    try:
        with viewer.txn() as state:
            first = layers[0].voxel_size_nm
            state.dimensions = neuroglancer.CoordinateSpace(
                names=["x", "y", "z"], units="nm", scales=first[::-1])
            state.position = _centre(layers[0])[::-1]  # x, y, z, in the first's voxels
            # Zoom (voxels per screen pixel) to fit a section in ~600 pixels, but never
            # beyond full resolution: an overview of a large volume would read it all.
            state.cross_section_scale = min(1.0, max(1, *layers[0].volume.shape[-2:]) / 600)
            for layer in layers:
                state.layers[layer.name] = _layer(neuroglancer, LazyVolume, layer)
            if layers[0].kind == "image":  # the base layer, e.g. the EM images: opaque
                state.layers[layers[0].name].opacity = 1.0
        _wait_until_answering(viewer.get_viewer_url())
        yield viewer
    finally:
        neuroglancer.stop()


def _centre(layer: Layer) -> list[float]:
    """The centre of a layer's middle section, (z, y, x) in its voxels."""
    spatial = layer.volume.shape[-3:]
    return [o + n // 2 + (0.5 if axis == 0 else n % 2 / 2)
            for axis, (o, n) in enumerate(zip(layer.voxel_offset, spatial))]


def _layer(neuroglancer, volume_class, layer: Layer):
    """The neuroglancer layer of one :class:`Layer`."""
    names, units, scales = ["z", "y", "x"], ["nm"] * 3, list(layer.voxel_size_nm)
    offset = list(layer.voxel_offset)
    if layer.kind == "affinities":
        names, units, scales, offset = ["c^", *names], ["", *units], [1, *scales], [0, *offset]
    source = volume_class(
        ServedArray(layer.volume, layer.kind),
        dimensions=neuroglancer.CoordinateSpace(names=names, units=units, scales=scales),
        volume_type="segmentation" if layer.kind == "segmentation" else "image",
        voxel_offset=offset,
    )
    if layer.kind == "segmentation":
        return neuroglancer.SegmentationLayer(source=source)
    if layer.kind == "affinities":
        blue = "toNormalized(getDataValue(2))" if layer.volume.shape[0] >= 3 else "0.0"
        return neuroglancer.ImageLayer(source=source, shader=_AFFINITY_SHADER % blue)
    grey = contrast_range(layer.volume)
    controls = {} if grey is None else {"normalized": {"range": list(grey)}}
    return neuroglancer.ImageLayer(source=source, shader_controls=controls)


def _wait_until_answering(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except (urllib.error.URLError, OSError) as exc:
            if time.monotonic() > deadline:
                raise InputError(f"the neuroglancer server did not answer at {url}: "
                                 f"{exc}") from exc
        time.sleep(0.1)


def view_command(*specs) -> str:
    """The ``emkit view`` line that shows these volumes, quoted for a shell.

    Args:
        specs: volume specs (strings or paths), None skipped.

    Returns:
        e.g. ``"emkit view raw.h5:raw pred.h5:pred seg.h5:seg"``.
    """
    return " ".join(["emkit", "view", *(shlex.quote(str(s)) for s in specs if s is not None)])


__all__ = ["KINDS", "Layer", "ServedArray", "contrast_range", "guess_kind", "plan_layers",
           "serve", "served_dtype", "view_command"]
