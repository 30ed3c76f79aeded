"""Dask, behind one small interface: connect to workers, run one function per block.

This is the only module of emkit that imports ``dask.distributed``. Work runs on a
:class:`distributed.LocalCluster` by default (``workers`` processes of one thread
each: the model and numba loops hold the GIL, so processes, not threads, run in
parallel), or on a running cluster given by its scheduler address
(``tcp://host:8786``). Local worker processes split the cores between their
TensorFlow thread pools (:func:`worker_environment`). emkit writes no scheduler of its
own; it submits one task per block and waits for them, so retries, work stealing and
worker loss are Dask's.

>>> with connect(workers=2) as client:                      # doctest: +SKIP
...     run_blocks(client, work, blocks, desc="predict")
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from emkit.errors import EmkitError, InputError


class BlockFailed(EmkitError, RuntimeError):
    """A block's task raised; the blocks finished before it keep their markers."""


@contextmanager
def connect(scheduler: str | None = None, *, workers: int = 1, processes: bool = True,
            threads_per_worker: int = 1, memory_limit="auto", client=None) -> Iterator:
    """A :class:`distributed.Client` for a local cluster or a running scheduler.

    Args:
        scheduler: Address of a running scheduler (``tcp://host:8786``); None starts a
            :class:`~distributed.LocalCluster` for the duration of the ``with`` block.
        workers: Workers of the local cluster.
        processes: Local workers are processes (default) or threads of this process.
        threads_per_worker: Threads per local worker.
        memory_limit: Per local worker: ``"auto"`` (the machine's memory split evenly),
            bytes, or a string such as ``"1GiB"``; Dask pauses a worker at 80% of it
            and restarts one at 95%.
        client: An existing client to use as it is (not closed at the end).

    Yields:
        The client.
    """
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"--scheduler: cannot reach a Dask scheduler at '{scheduler}' "
                             f"({exc})") from exc
        try:
            yield client
        finally:
            client.close()
        return
    if not isinstance(workers, int) or workers < 1:
        raise InputError(f"--workers: expected an int >= 1, got {workers!r}")
    extra = {"env": worker_environment(workers)} if processes else {}
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=threads_per_worker, processes=processes,
        memory_limit=memory_limit, dashboard_address=None, silence_logs=logging.ERROR, **extra,
    )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def worker_environment(workers: int) -> dict[str, str]:
    """Environment of local worker processes: the machine's cores split between them.

    Dask already keeps OpenMP, MKL and OpenBLAS to one thread per worker; TensorFlow
    keeps its own thread pools, which by default span every core, so two workers on
    two cores would run four busy threads. Each worker's TensorFlow gets
    ``cores // workers`` threads (at least one) instead.

    Args:
        workers: Local worker processes.

    Returns:
        ``TF_NUM_INTRAOP_THREADS`` and ``TF_NUM_INTEROP_THREADS``, as strings.

    >>> import os; os.cpu_count() >= 1 and worker_environment(os.cpu_count() * 2)
    {'TF_NUM_INTRAOP_THREADS': '1', 'TF_NUM_INTEROP_THREADS': '1'}
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = str(max(1, (cores or 1) // workers))
    return {"TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads}


def worker_memory_limit() -> tuple[int, float] | None:
    """This Dask worker's memory limit and the fraction of it where Dask restarts it.

    The fraction is Dask's ``distributed.worker.memory.terminate`` (0.95 by default; 1
    when terminating is off). Called inside a task.

    Returns:
        ``(bytes, fraction)``, or None outside a worker or for a worker without a limit.
    """
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
    if not limit:
        return None
    import dask

    fraction = dask.config.get("distributed.worker.memory.terminate", 0.95)
    return int(limit), float(fraction) if fraction else 1.0


def run_blocks(client, function: Callable, blocks: Iterable, *args, desc: str = "blocks",
               progress: bool = True, total: int | None = None) -> list:
    """Runs ``function(block, *args)`` for every block on the cluster; waits for all.

    Tasks are submitted at once (the scheduler orders them) and collected as they
    finish, with a tqdm bar. When one raises, the tasks not yet started are cancelled
    and :class:`BlockFailed` is raised naming the block; blocks already finished have
    written their markers, so a rerun does only the rest.

    Args:
        client: A :class:`distributed.Client`.
        function: A module-level function (it is pickled by reference).
        blocks: The blocks to run.
        *args: Further arguments, the same for every block (small: a job description).
        desc: The progress bar's label.
        progress: Show the bar on stderr.
        total: Number of blocks, for the bar when ``blocks`` is an iterator.

    Returns:
        The tasks' results, in the order of ``blocks``.
    """
    from distributed import as_completed
    from tqdm.auto import tqdm

    blocks = list(blocks)
    if not blocks:
        return []
    run = uuid.uuid4().hex[:8]  # fresh keys: a rerun on the same client recomputes
    futures = [client.submit(function, block, *args, pure=False,
                             key=f"{desc}-{getattr(block, 'id', i)}-{run}")
               for i, block in enumerate(blocks)]
    index = {f.key: i for i, f in enumerate(futures)}
    results = [None] * len(futures)
    with tqdm(total=total or len(blocks), desc=desc, unit="block", disable=not progress,
              file=sys.stderr, dynamic_ncols=True) as bar:
        for future in as_completed(futures):
            i = index[future.key]
            if future.status == "error":
                for other in futures:
                    if not other.done():
                        other.cancel()
                exc = future.exception()
                block = blocks[i]
                where = getattr(block, "write", block)
                if isinstance(exc, EmkitError) and not isinstance(exc, BlockFailed):
                    raise exc
                raise BlockFailed(
                    f"{desc}: block {getattr(block, 'id', i)} (voxels {_box(where)}) failed: "
                    f"{type(exc).__name__}: {exc}; finished blocks are kept, rerun to resume"
                ) from exc
            results[i] = future.result()
            bar.update(1)
    return results


def _box(where) -> str:
    if isinstance(where, tuple) and all(isinstance(s, slice) for s in where):
        return ", ".join(f"{s.start}:{s.stop}" for s in where)
    return repr(where)


__all__ = ["BlockFailed", "connect", "run_blocks"]
