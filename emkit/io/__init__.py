"""Reading and writing EM volumes, axes (z, y, x), with their voxel size in nm.

Plain NumPy: this package never imports Keras or TensorFlow, and it imports h5py, tifffile,
zarr and Pillow only when a file of that format is used.

A volume is named by a spec (see :mod:`emkit.io.spec`)::

    stack.tif                     multipage TIFF, one page per section
    file.h5:volumes/raw           HDF5 dataset (.h5, .hdf5, .hdf)
    store.zarr:volumes/raw        Zarr array (store.zarr alone: array at the root)
    array.npy                     NumPy array
    folder/                       PNG sections, sorted by the number in the name
    emkit:isbi2012/train-labels   a file shipped with emkit

>>> from emkit.io import open_volume
>>> raw = open_volume("emkit:isbi2012/train-volume")
>>> raw.shape, raw.dtype.name
((25, 512, 512), 'uint8')
>>> raw[0:2, :4, :4].shape
(2, 4, 4)
"""

from emkit.io.spec import SUPPORTED_FORMATS, VolumeSpec, parse_spec
from emkit.io.text import read_yaml_mapping, write_text
from emkit.io.volume import (
    Volume,
    list_keys,
    open_volume,
    read_attributes,
    read_volume,
    require_ndim,
)
from emkit.io.write import write_volume

__all__ = [
    "SUPPORTED_FORMATS",
    "Volume",
    "VolumeSpec",
    "list_keys",
    "open_volume",
    "parse_spec",
    "read_attributes",
    "read_volume",
    "read_yaml_mapping",
    "require_ndim",
    "write_text",
    "write_volume",
]
