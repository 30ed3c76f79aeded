"""Blockwise prediction on Dask: :func:`predict_blockwise`.

The volume is cut into blocks (:mod:`~emkit.blockwise.grid`); each block is one Dask
task that predicts its write region with :func:`emkit.inference.predict_volume`
(``roi=``), reading the context its tiles need from the volume around it and
mirroring only at the volume's own edges. Blockwise and whole-volume predictions agree
to float rounding for any model and tiling options (the tests check 1e-5), in one of
two ways, chosen by :func:`emkit.inference.plan.is_equivariant`:

- equivariant models (valid convolutions and poolings, the dense form of a patch
  classifier), whose tiles compute what one pass over the whole volume computes
  wherever they lie: each block is tiled by itself, from its start. Blocks start on
  multiples of the model's period (the product of its poolings; the block size is
  rounded up to one), so every tile computes the whole-volume values there. This
  computes fewer tiles than the whole-volume grid's would (a block's last tiles end
  on its face instead of straddling it): for the original U-Net (388x388 tiles) on
  16x2048x2048 in 512x512 blocks, 1024 tiles where the whole-volume grid's tiles
  reaching into each block would be 1936 (the whole volume alone computes 784).
- any other model (same padding, as the 3D U-Net and the RSUNet): a tile's output
  depends on where it lies, so each block computes exactly the tiles of the
  whole-volume tile grid that reach into it, with the whole volume's blending weights
  (:meth:`~emkit.inference.tiling.TileGrid.restrict`), and keeps their part inside
  it. A tile that straddles a block face is computed by the blocks on both sides:
  that is the price of exactness, about one layer of tiles per block face. For the
  slim 3D U-Net of the medulla benchmark (24x64x64 tiles, step 16x48x48) on a
  64x1024x1024 volume, the whole volume computes 1764 tiles; 64x256x256 blocks
  compute 2304 (1.31x), 64x512x512 blocks 1936 (1.10x) and 64^3 blocks 5184 (2.9x).
  Larger blocks cost less, hence the default of 64x256x256.

Each worker loads the model once (a per-process cache keyed by the file's path, size
and modification time) and runs one block at a time through it. Blocks write their
own chunks of a Zarr array in the job folder, then their completion marker; the
output is put in place when all blocks are done (:mod:`~emkit.blockwise.store`).
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from emkit.blockwise import store
from emkit.blockwise.cluster import connect, run_blocks
from emkit.blockwise.grid import Block, block_grid
from emkit.errors import InputError, MissingDataError
from emkit.inference.tiled import predict_volume

STAGE = "predict"
#: Default block (write region), (z, y, x): 4 Mvoxel x 3 channels is 48 MiB of output.
DEFAULT_BLOCK = (64, 256, 256)
#: The options of :func:`emkit.inference.predict_volume` that each block passes on;
#: their defaults are predict_volume's.
TILING = ("tile_shape", "overlap", "blend", "batch_size", "tta", "offsets")
_TILING_PARAMETERS = [inspect.signature(predict_volume).parameters[name] for name in TILING]


def _takes_tiling(function):
    """Gives ``function(..., **tiling)`` the :data:`TILING` keywords of predict_volume,
    with its defaults, in its signature (:func:`inspect.signature`, :func:`help`)."""
    signature = inspect.signature(function)
    kept = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    added = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in _TILING_PARAMETERS]
    function.__signature__ = signature.replace(parameters=kept + added)
    return function


@dataclass(frozen=True)
class PredictJob:
    """What a block task needs (small, pickled with every task)."""

    model: str
    model_stamp: tuple[int, int]
    raw: str
    array: str
    folder: str
    tiling: dict


@_takes_tiling
def predict_blockwise(
    model,
    raw,
    output,
    *,
    block_shape=DEFAULT_BLOCK,
    workers: int = 1,
    scheduler: str | None = None,
    client=None,
    processes: bool = True,
    memory_limit="auto",
    overwrite: bool = False,
    progress: bool = True,
    **tiling,
) -> dict:
    """Predicts a chunked volume block by block on Dask workers; resumable.

    Args:
        model: Path of a saved ``.keras`` model (each worker loads it once).
        raw: The raw volume, chunked Zarr or HDF5, ``(Z, Y, X)``.
        output: ``out.zarr[:key]`` or ``out.h5:key``; float32, ``(C, Z, Y, X)`` on disk
            (``(Z, Y, X)`` for one channel), chunked by block.
        block_shape: Write region of a block, an int or ``(z, y, x)``; rounded up to
            a multiple of the model's period. Large blocks cost less for a model
            that is not equivariant (see above).
        workers: Local Dask workers (processes), when no ``scheduler`` or ``client``.
        scheduler: Address of a running Dask scheduler.
        client: A :class:`distributed.Client` to use instead.
        processes: Local workers are processes (True) or threads.
        memory_limit: Per local worker (see :func:`~emkit.blockwise.cluster.connect`).
        overwrite: Replace an existing output (and discard an unfinished job with
            other parameters).
        progress: Show a progress bar.
        **tiling: ``tile_shape``, ``overlap``, ``blend``, ``batch_size``, ``tta`` and
            ``offsets`` (:data:`TILING`), as for :func:`emkit.inference.predict_volume`
            (with its defaults), inside each block.

    Returns:
        A summary: ``blocks``, ``run`` (blocks computed now), ``skipped`` (found done),
        ``block_shape``, ``context``, ``seconds``.

    Raises:
        InputError: a bad input (not chunked, wrong dimensions, a block smaller than
            the model's context), or an unfinished job with other parameters.
        OverwriteError: the output exists and ``overwrite`` is False.
        BlockFailed: a block's task failed; finished blocks are kept for a rerun.
    """
    start = time.perf_counter()
    raw_volume = store.open_chunked(raw, ndim=3, role="--input")
    model_path = Path(model)
    if not model_path.is_file():
        raise MissingDataError(f"--model: no model file '{model_path}'")
    store.check_output(output, overwrite=overwrite)  # before any work
    tiling = _tiling(tiling)
    stamp = _stamp(model_path)
    with connect(scheduler, workers=workers, processes=processes, memory_limit=memory_limit,
                 client=client) as dask_client:
        wanted = _per_axis(block_shape)
        info = dask_client.submit(
            model_info, str(model_path.resolve()), stamp,
            tuple(min(b, n) for b, n in zip(wanted, raw_volume.shape)), tiling, pure=False,
        ).result()
        rounded = tuple(-(-b // p) * p for b, p in zip(wanted, info["period"]))
        grid = block_grid(raw_volume.shape, rounded,
                          context=(info["context_before"], info["context_after"]),
                          name=f"--input '{raw_volume.spec}'")
        params = {"stage": STAGE, "model": str(model_path.resolve()), "model_stamp": stamp,
                  "raw": raw_volume.spec, "shape": raw_volume.shape,
                  "block_shape": grid.block_shape, "tiling": tiling}
        folder, resumed = store.start_job(output, params, overwrite=overwrite)
        channels = info["out_channels"]
        array = folder / "output.zarr"
        store.create_block_array(array, raw_volume.shape, grid.block_shape, "float32",
                                 channels=None if channels == 1 else channels)
        job = PredictJob(model=str(model_path.resolve()), model_stamp=stamp,
                         raw=raw_volume.spec, array=str(array), folder=str(folder),
                         tiling=tiling)
        todo = store.todo_blocks(folder, STAGE, grid)
        run_blocks(dask_client, predict_block, todo, job, desc=STAGE, progress=progress)
    store.publish(array, output, grid, overwrite=overwrite, voxel_size_nm=raw_volume.voxel_size_nm)
    store.remove(folder)
    return {"blocks": len(grid), "run": len(todo), "skipped": len(grid) - len(todo),
            "resumed": resumed, "block_shape": grid.block_shape,
            "context": tuple(a + b for a, b in zip(grid.context_before, grid.context_after)),
            "channels": channels, "seconds": time.perf_counter() - start}


def predict_block(block: Block, job: PredictJob) -> int:
    """One block's task: predict its write region, write its chunks, then its marker.

    Returns:
        Voxels written (0 when the block was already done).
    """
    folder = Path(job.folder)
    if store.is_done(folder, STAGE, block.id):
        return 0
    from emkit.inference import to_disk_layout
    from emkit.io import open_volume

    model, lock = _cached_model(job.model, job.model_stamp)
    raw = open_volume(job.raw)
    with lock:  # one block at a time through a model (threaded workers share it)
        pred = predict_volume(model, raw, roi=block.write, progress=False, **job.tiling)
    array = store.open_block_array(Path(job.array))
    data = to_disk_layout(pred)
    array[(*(slice(None),) * (data.ndim - 3), *block.write)] = data
    store.mark_done(folder, STAGE, block.id, {"voxels": block.size})
    return block.size


def model_info(model_path: str, stamp, block_shape, tiling: dict) -> dict:
    """What the blocks need to know of the model (runs on a worker).

    Args:
        model_path: The saved model.
        stamp: Its size and modification time (:func:`_stamp`).
        block_shape: The wanted block, cut to the volume.
        tiling: The tiling options (:data:`TILING`).

    Returns:
        ``context_before`` and ``context_after`` (the model's context, planned for a
        block), ``period`` and ``out_channels``. (Each block plans its own tiles:
        :func:`~emkit.inference.predict_volume` with ``roi=``.)
    """
    from emkit.inference import plan_prediction

    options = {name: tiling[name] for name in ("tile_shape", "overlap", "blend", "tta")}
    model, lock = _cached_model(model_path, stamp)
    with lock:
        in_channels = int(model.inputs[0].shape[-1])
        if in_channels != 1:
            raise InputError(
                f"--model '{model_path}' takes {in_channels} input channels; blockwise "
                "prediction reads one-channel (z, y, x) volumes"
            )
        plan = plan_prediction(model, block_shape, **options)
    grid = plan.grid
    before = grid.context_before
    after = tuple(i - o - b for i, o, b in zip(grid.input_shape, grid.output_shape, before))
    return {"context_before": before, "context_after": after, "period": plan.period,
            "out_channels": plan.out_channels}


# Per-process model cache: (path, stamp) -> (model, lock). A worker loads a model once.
_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()


def _cached_model(path: str, stamp):
    key = (path, tuple(stamp))
    with _MODELS_LOCK:
        if key not in _MODELS:
            if tuple(stamp) != _stamp(Path(path)):
                raise InputError(f"--model '{path}' changed while the job ran; rerun it")
            from emkit.models.saving import load_model

            for old in [k for k in _MODELS if k[0] == path]:
                del _MODELS[old]
            model = load_model(path, compile=False)
            _MODELS[key] = (model, threading.Lock())
        return _MODELS[key]


def _stamp(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return (int(info.st_size), int(info.st_mtime_ns))


def _per_axis(value) -> tuple[int, int, int]:
    values = (value,) * 3 if isinstance(value, int) else tuple(value)
    if len(values) != 3:
        raise InputError(f"block size: expected 3 ints (z, y, x), got {value!r}")
    return tuple(int(v) for v in values)


def _tiling(given: dict) -> dict:
    """The tiling options, predict_volume's defaults filled in, as plain JSON values."""
    unknown = sorted(set(given) - set(TILING))
    if unknown:
        raise InputError(f"unknown prediction option(s) {unknown}; allowed: {', '.join(TILING)}")
    tiling = {p.name: given.get(p.name, p.default) for p in _TILING_PARAMETERS}
    for name in ("tile_shape", "overlap"):
        value = tiling[name]
        if value is not None and not isinstance(value, int):
            tiling[name] = tuple(int(v) for v in value)
    offsets = tiling["offsets"]
    return {**tiling, "batch_size": int(tiling["batch_size"]), "tta": bool(tiling["tta"]),
            "offsets": None if offsets is None else [list(map(int, o)) for o in offsets]}


__all__ = [
    "DEFAULT_BLOCK",
    "PredictJob",
    "predict_block",
    "predict_blockwise",
]
