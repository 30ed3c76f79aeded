"""A gigavoxel chain as one command: build, predict, segment, evaluate (issue 17).

    NO_ALBUMENTATIONS_UPDATE=1 TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow \\
    nice -n 10 .venv/bin/python benchmarks/endtoend.py --workdir /tmp/e2e \\
        [--shape 250,2000,2000] [--workers 1,2] [--memory-limit 2GiB] \\
        [--block-size 64,256,256] [--speedup-shape 64,1024,1024] [--crop-shape 64,512,512]

Rerun the same command after a kill: finished stages are skipped and the table is
printed again with them; an unfinished blockwise stage resumes (the emkit CLI skips
the blocks it finished). ``--stages report`` prints the table only.

Stages (``--stages``, default all, in this order):

build     The test volume: the FlyEM medulla cube (188 x 250 x 250 at 10 nm, dense
          labels; ``/work/shared/data/neuroproof_medulla``) tiled and mirrored to
          ``--shape`` (250 x 2000 x 2000 = 1.0 Gvoxel by default: 8 x 8 mirrored tiles
          in y and x, z mirrored once). The raw is preprocessed as the model's recipe
          says (``standardize``: per source section, which equals per tiled section when
          y and x hold whole tiles) and stored as uint8, because ``predict --blockwise``
          takes no whole-volume preprocessing. Ground truth: the cube's bodies, one id
          per tile, joined across each mirror seam (a body that touches a seam continues
          into its mirror image, so both halves are one body). ``raw.zarr`` and
          ``gt.zarr`` are written chunk by chunk (never whole in memory), each chunk
          followed by a done-marker, so a rerun writes only the missing chunks.
speedup   ``predict --blockwise`` and ``segment --blockwise`` with each ``--workers``
          count on a ``--speedup-shape`` corner of the volume (``full``: the whole
          volume, reusing the chain's run for the largest count).
predict   ``emkit predict --blockwise`` on the whole volume, the largest worker count.
segment   ``emkit segment --blockwise`` on its affinities.
evaluate  ``emkit evaluate`` of the segmentation against the tiled ground truth.
crop      On a ``--crop-shape`` corner (it crosses mirror seams): whole-volume
          ``emkit predict`` + ``emkit segment`` (no --blockwise) and the blockwise pair,
          both evaluated against the ground truth and against each other, and the
          largest difference of the two affinity volumes. ``--dust-size`` means
          watershed fragments in memory but whole objects blockwise, so both
          segmentations are made again with ``--dust-size 0`` and compared too.

Every stage runs the real CLI as a subprocess; a sampler records the peak resident
memory of its process tree (each process, and the sum), its CPU time and the machine's
load average (the table's "machine load": above the worker count, other jobs shared
the cores). ``--rss-cap`` kills a stage whose tree exceeds it and records that (a
guard for the shared machine: two uint64 Gvoxel volumes read whole are 16 GB). A
killed benchmark takes its CLI with it (PR_SET_PDEATHSIG); a rerun also ends any
process of an unfinished attempt that is still running, by its recorded pid. All
outputs, logs/ and ``results.json`` (per stage and attempt: seconds, CPU seconds,
peaks, exit status, the CLI's summary line) live in ``--workdir``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "runs" / "acc-medulla_unet3d_cpu" / "model.keras"
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "neuroproof_medulla" / "neuroproof_medulla.h5"


STAGES = ("build", "speedup", "predict", "segment", "evaluate", "crop")
MIB = 1 << 20


# --------------------------------------------------------------------------- the volume


def mirror_index(start, stop, n):
    """Source index and tile number of positions start..stop-1 of an axis made by
    tiling a source of length n, every other tile mirrored (period 2n)."""
    p = np.arange(start, stop)
    q = p % (2 * n)
    return np.where(q < n, q, 2 * n - 1 - q), p // n


def tile_counts(shape, source_shape):
    return tuple(-(-s // n) for s, n in zip(shape, source_shape))


def covered(t, length, n):
    """Source range that tile t of an axis of `length` covers (mirrored when t is odd)."""
    m = min(n, length - t * n)
    return slice(0, m) if t % 2 == 0 else slice(n - m, n)


def seam_lut(local, shape):
    """Global body id of (tile, local label): a union-find of the bodies that touch
    each mirror seam on both sides. Returns an array (tiles, labels + 1), uint64."""
    n = local.shape
    tiles = tile_counts(shape, n)
    k = int(local.max()) + 1
    parent = np.arange(int(np.prod(tiles)) * k)

    def find(a):
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:
            parent[a], a = root, parent[a]
        return root

    faces = {}
    for t in np.ndindex(*tiles):
        for axis in range(3):
            if t[axis] + 1 >= tiles[axis]:
                continue
            seam = n[axis] - 1 if t[axis] % 2 == 0 else 0
            region = tuple(seam if a == axis else covered(t[a], shape[a], n[a])
                           for a in range(3))
            key = (axis, seam, *(str(r) for r in region))
            if key not in faces:
                ids = np.unique(local[region])
                faces[key] = ids[ids > 0]
            u = np.ravel_multi_index(t, tiles) * k
            other = list(t)
            other[axis] += 1
            v = np.ravel_multi_index(other, tiles) * k
            for label in faces[key]:
                a, b = find(u + int(label)), find(v + int(label))
                if a != b:
                    parent[max(a, b)] = min(a, b)
    roots = np.array([find(i) for i in range(parent.size)]).reshape(-1, k)
    _, ids = np.unique(roots[:, 1:], return_inverse=True)
    lut = np.zeros(roots.shape, np.uint64)
    lut[:, 1:] = ids.reshape(roots.shape[0], k - 1) + 1
    return lut


class Source:
    """The medulla cube, preprocessed, with its labels made local (0..K)."""

    def __init__(self, path, preprocess_method, shape, options=None):
        import h5py

        from emkit.preprocess import preprocess

        with h5py.File(path, "r") as f:
            raw = f["volumes/raw"][...]
            labels = f["volumes/labels/neuron_ids"][...]
            self.voxel_size = [float(v) for v in f["volumes/raw"].attrs.get("resolution",
                                                                           (1, 1, 1))]
        x = preprocess(raw, method=preprocess_method, **(options or {}))
        if preprocess_method != "none":
            raw = np.round(np.asarray(x) * 255).astype(np.uint8)
        self.raw = raw
        ids = np.unique(labels)
        if ids[0] != 0:
            ids = np.concatenate([[0], ids])
        self.local = np.searchsorted(ids, labels).astype(np.int32)
        self.bodies = len(ids) - 1
        self.shape = tuple(shape)
        self.tiles = tile_counts(shape, raw.shape)
        self.lut = seam_lut(self.local, shape)

    def chunk(self, origin, size):
        """Raw (uint8) and ground truth (uint64) of a region of the tiled volume."""
        idx, tix = zip(*(mirror_index(o, o + s, n)
                         for o, s, n in zip(origin, size, self.raw.shape)))
        grid = np.ix_(*idx)
        t = (tix[0][:, None, None] * self.tiles[1] + tix[1][None, :, None]) * self.tiles[2] \
            + tix[2][None, None, :]
        return self.raw[grid], self.lut[t, self.local[grid]]


def open_or_create(path, shape, chunks, dtype, voxel_size):
    import zarr

    if (Path(path) / "zarr.json").exists():
        array = zarr.open_array(store=str(path), mode="r+")
        if tuple(array.shape) != tuple(shape) or tuple(array.chunks) != tuple(chunks):
            raise SystemExit(f"{path} holds shape {array.shape}, chunks {array.chunks}; "
                             f"wanted {shape}, {chunks}: use another --workdir")
        return array
    return zarr.create_array(store=str(path), shape=shape, chunks=chunks, dtype=dtype,
                             attributes={"resolution": voxel_size, "offset": [0, 0, 0]})


def write_volume(source, folder, shape, chunks, *, progress=True):
    """raw.zarr and gt.zarr of the region (0, 0, 0) + shape, chunk by chunk, resumable."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    raw = open_or_create(folder / "raw.zarr", shape, chunks, "uint8", source.voxel_size)
    gt = open_or_create(folder / "gt.zarr", shape, chunks, "uint64", source.voxel_size)
    markers = folder / ".build"
    markers.mkdir(exist_ok=True)
    origins = list(np.ndindex(*tile_counts(shape, chunks)))
    done = 0
    for i, c in enumerate(origins):
        marker = markers / "_".join(map(str, c))
        if marker.exists():
            continue
        origin = tuple(a * s for a, s in zip(c, chunks))
        size = tuple(min(s, n - o) for s, n, o in zip(chunks, shape, origin))
        r, g = source.chunk(origin, size)
        region = tuple(slice(o, o + s) for o, s in zip(origin, size))
        raw[region] = r
        gt[region] = g
        marker.touch()
        done += 1
        if progress and (done % 16 == 0 or i == len(origins) - 1):
            print(f"  {folder.name}: chunk {i + 1}/{len(origins)}", file=sys.stderr, flush=True)
    return len(origins), done


# --------------------------------------------------------------------------- running stages


class TreeMemory:
    """Peak RSS of a process tree: each process, and their sum; kills the tree above a cap.

    Rooted at any process (a stage's CLI, or this one for the build) and kept per process,
    so that the emkit CLI process and each Dask worker are told apart.
    """

    def __init__(self, pid, *, interval=0.2, cap=None, tick=None, tick_every=10.0):
        import psutil

        self.root = psutil.Process(pid)
        self.interval, self.cap, self.tick, self.tick_every = interval, cap, tick, tick_every
        self.total, self.peaks, self.names, self.capped = 0, {}, {}, False
        self.cpu = {}  # pid: CPU seconds (user + system) at its last sample
        self.loads = []  # the machine's 1-minute load average, per sample
        self.processes = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def tree(self):
        import psutil

        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return []

    def _run(self):
        import psutil

        last = time.monotonic()
        while not self._stop.is_set():
            total = 0
            for p in self.tree():
                try:
                    rss = p.memory_info().rss
                    cpu = p.cpu_times()
                    self.cpu[p.pid] = cpu.user + cpu.system
                    if p.pid not in self.processes:
                        self.processes[p.pid] = p.create_time()
                        self.names[p.pid] = " ".join(p.cmdline()[:3])[-80:]
                        last = 0.0  # record the new process at once, for a rerun's cleanup
                except psutil.Error:
                    continue
                total += rss
                self.peaks[p.pid] = max(self.peaks.get(p.pid, 0), rss)
            self.total = max(self.total, total)
            self.loads.append(os.getloadavg()[0])
            if self.cap and total > self.cap and not self.capped:
                self.capped = True
                kill_tree(self.processes)
            if self.tick and time.monotonic() - last > self.tick_every:
                last = time.monotonic()
                self.tick()
            self._stop.wait(self.interval)

    @property
    def load(self):
        return sum(self.loads) / len(self.loads) if self.loads else 0.0

    @property
    def cpu_seconds(self):
        return sum(self.cpu.values())

    @property
    def main(self):
        return self.peaks.get(self.root.pid, 0)

    @property
    def worker(self):
        """Peak of one process below the CLI (a Dask worker); the CLI's own without any."""
        others = [v for pid, v in self.peaks.items() if pid != self.root.pid]
        return max(others) if others else self.main

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def kill_tree(processes):
    """SIGKILL the processes {pid: create_time} that still exist (same pid and start)."""
    import psutil

    for pid, created in processes.items():
        try:
            p = psutil.Process(int(pid))
            if abs(p.create_time() - float(created)) < 0.01:
                p.kill()
        except psutil.Error:
            pass


def _parent_death_signal():
    """A preexec_fn for the CLI: Linux sends it SIGKILL when the benchmark dies, so that a
    killed benchmark leaves no CLI running (its Dask workers then lose their scheduler
    and stop). The libc function is looked up here, before any fork."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec():
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return preexec


def output_exists(spec):
    """A Zarr output ``store.zarr[:key]`` is complete (emkit publishes it atomically)."""
    path, _, key = str(spec).partition(":")
    return (Path(path) / key / "zarr.json").exists()


class StageFailed(RuntimeError):
    """A CLI stage ended with an error: the chain stops there."""


class Chain:
    """The results file and the stage runner."""

    def __init__(self, workdir, args):
        self.workdir = Path(workdir)
        self.args = args
        self.file = self.workdir / "results.json"
        self.state = json.loads(self.file.read_text()) if self.file.exists() else {}
        self.state.setdefault("stages", {})
        self.lock = threading.Lock()
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)

    def save(self):
        with self.lock:
            tmp = self.file.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(self.state, indent=1))
            os.replace(tmp, self.file)

    def record(self, key, **fields):
        rec = self.state["stages"].setdefault(key, {"attempts": []})
        rec.update(fields)
        return rec

    def run(self, key, cmd, *, voxels, workers, volume, output=None, capture=False):
        """Runs one CLI stage unless done; returns its record (stdout kept with capture)."""
        cmd = [str(c) for c in cmd]
        rec = self.state["stages"].get(key)
        if rec and rec.get("done"):
            print(f"[{key}] done before, skipped", file=sys.stderr, flush=True)
            return rec
        if rec and rec.get("cmd") != cmd:
            print(f"[{key}] the command changed since the last attempt; its attempts are "
                  "dropped", file=sys.stderr, flush=True)
            self.state["stages"].pop(key)
        rec = self.record(key, cmd=cmd, voxels=int(voxels), workers=int(workers), volume=volume)
        for attempt in rec["attempts"]:  # a killed benchmark may have left its CLI running
            if attempt.get("rc") is None and attempt.get("processes"):
                kill_tree(attempt["processes"])
        if output and output_exists(output):
            rec.update(done=True, note="output found complete")
            self.save()
            print(f"[{key}] output {output} exists, taken as done", file=sys.stderr, flush=True)
            return rec
        print(f"[{key}] {shlex.join(cmd)}", file=sys.stderr, flush=True)
        attempt = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": 0.0, "rc": None}
        rec["attempts"].append(attempt)
        self.save()
        start = time.perf_counter()
        with open(self.workdir / "logs" / f"{key.replace('/', '_')}.log", "a") as log:
            log.write(f"\n=== {attempt['started']}: {shlex.join(cmd)}\n")
            log.flush()
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE if capture else log, stderr=log, text=True,
                preexec_fn=_parent_death_signal())  # noqa: PLW1509 (it only calls prctl)

            def tick():
                attempt["seconds"] = round(time.perf_counter() - start, 1)
                attempt["processes"] = {str(k): v for k, v in memory.processes.items()}
                attempt.update(cpu_seconds=round(memory.cpu_seconds, 1),
                               load=round(memory.load, 2),
                               peak_rss_total_mib=memory.total // MIB,
                               peak_rss_worker_mib=memory.worker // MIB,
                               peak_rss_main_mib=memory.main // MIB)
                self.save()

            memory = TreeMemory(proc.pid, cap=self.args.rss_cap, tick=tick)
            try:
                with memory:
                    stdout, _ = proc.communicate()
            except BaseException:  # SIGTERM (sys.exit) or Ctrl-C: end the CLI's tree too
                kill_tree(memory.processes)
                proc.wait()
                tick()
                raise
        tick()
        attempt["rc"] = proc.returncode
        attempt["capped"] = memory.capped
        if proc.returncode != 0:
            rec["failed"] = True
            self.save()
            why = (f"killed: its processes held more than --rss-cap "
                   f"{self.args.rss_cap // MIB} MiB" if memory.capped
                   else f"exit status {proc.returncode}")
            raise StageFailed(f"[{key}] FAILED ({why}); log: {log.name}")
        summary = _summary(log.name)
        if summary:
            rec["summary"] = summary
        if capture:
            try:
                rec["metrics"] = json.loads(stdout)
            except ValueError:
                rec["metrics"], attempt["stdout"] = None, stdout[-2000:]
        rec.update(done=True, failed=False)
        self.save()
        print(f"[{key}] {attempt['seconds']} s, peak RSS one worker "
              f"{attempt['peak_rss_worker_mib']} MiB, all {attempt['peak_rss_total_mib']} MiB",
              file=sys.stderr, flush=True)
        return rec


def _summary(log):
    """The CLI's last 'wrote ...' line in a stage's log (blocks computed and found done)."""
    with open(log, errors="replace") as f:
        lines = [line.strip() for line in f.read().replace("\r", "\n").splitlines()]
    return next((line[-400:] for line in reversed(lines) if line.startswith("wrote ")), None)


def totals(rec):
    """Seconds over all attempts (a resumed stage counts its killed attempts) and peaks."""
    attempts = rec.get("attempts") or []
    seconds = sum(a.get("seconds", 0) for a in attempts)
    cpu = sum(a.get("cpu_seconds", 0) for a in attempts)
    load = sum(a.get("load", 0) * a.get("seconds", 0) for a in attempts)
    peak = {k: max((a.get(k, 0) for a in attempts), default=0)
            for k in ("peak_rss_worker_mib", "peak_rss_total_mib", "peak_rss_main_mib")}
    peak["load"] = load / seconds if seconds else 0.0
    return seconds, cpu, peak


# --------------------------------------------------------------------------- the benchmark


def parse_shape(text):
    values = tuple(int(v) for v in text.replace("x", ",").split(","))
    if len(values) != 3 or min(values) < 1:
        raise SystemExit(f"expected Z,Y,X, got {text!r}")
    return values


def recipe_preprocess(model):
    """The ``preprocess`` section of the recipe.yaml beside the model (or a folder up)."""
    import yaml

    for folder in (Path(model).parent, Path(model).parent.parent):
        recipe = folder / "recipe.yaml"
        if recipe.is_file():
            section = (yaml.safe_load(recipe.read_text()) or {}).get("preprocess") or {}
            options = {k: v for k, v in section.items() if k != "method"}
            return section.get("method", "none"), options, folder
    return "none", {}, None


def emkit_command(args):
    if args.emkit:
        return shlex.split(args.emkit)
    local = Path(sys.executable).parent / "emkit"
    return [str(local)] if local.exists() else [shutil.which("emkit") or "emkit"]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True,
                        help="all outputs, logs and results.json; a rerun resumes there")
    parser.add_argument("--shape", default="250,2000,2000",
                        help="the tiled volume, Z,Y,X (default 250,2000,2000 = 1.0 Gvoxel)")
    parser.add_argument("--model", default=str(DEFAULT_MODEL),
                        help="a .keras model (default: the medulla_unet3d_cpu run, "
                             f"{DEFAULT_MODEL.relative_to(REPO)})")
    parser.add_argument("--source", default=str(DEFAULT_SOURCE),
                        help="the medulla cube, CREMI-layout HDF5 (volumes/raw, "
                             "volumes/labels/neuron_ids)")
    parser.add_argument("--preprocess", default="auto",
                        choices=("auto", "none", "standardize", "whiten"),
                        help="applied to the source cube before tiling (default auto: the "
                             "method of the recipe.yaml beside the model)")
    parser.add_argument("--workers", default="1,2",
                        help="worker counts for the speed-up; the chain runs with the largest")
    parser.add_argument("--memory-limit", default="2GiB",
                        help="emkit's --memory-limit per Dask worker (default 2GiB)")
    parser.add_argument("--block-size", default="64,256,256",
                        help="--block-size of predict and segment, and the raw's chunks")
    parser.add_argument("--halo", default="8,8,8", help="segment --halo (default 8,8,8)")
    parser.add_argument("--speedup-shape", default="64,1024,1024",
                        help="corner on which each worker count runs predict and segment, "
                             "or 'full' (default 64,1024,1024)")
    parser.add_argument("--crop-shape", default="64,512,512",
                        help="corner for the whole-volume vs blockwise check (default "
                             "64,512,512; it crosses the mirror seams at 250 and 500)")
    parser.add_argument("--predict-options", default="",
                        help="extra options for every emkit predict, e.g. '--tile 24,128,128'")
    parser.add_argument("--segment-options", default=None,
                        help="options for every emkit segment (default: --recipe with the "
                             "model's run folder, i.e. its tuned postprocessing, when it has "
                             "a recipe.yaml); one threshold")
    parser.add_argument("--metrics", default="adapted_rand_error,voi_split,voi_merge",
                        help="emkit evaluate --metrics")
    parser.add_argument("--rss-cap", default="12GiB",
                        help="kill a stage whose processes together hold more (default 12GiB)")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated subset of {','.join(STAGES)}, or report "
                             "(print the table of results.json only)")
    parser.add_argument("--emkit", default=None, help="the emkit command (default: the one "
                        "beside this Python)")
    args = parser.parse_args(argv)
    from dask.utils import parse_bytes

    args.rss_cap = parse_bytes(args.rss_cap)
    shape = parse_shape(args.shape)
    block = parse_shape(args.block_size)
    workers = sorted({int(w) for w in args.workers.split(",") if w})
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(STAGES) - {"report"}
    if unknown:
        raise SystemExit(f"--stages: unknown {sorted(unknown)}; choose from {STAGES}")
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    chain = Chain(work, args)
    if stages == ["report"]:
        print(report(chain.state))
        return
    model = Path(args.model).resolve()
    method, options, run_folder = recipe_preprocess(model)
    if args.preprocess != "auto":
        method, options = args.preprocess, {}
    if args.segment_options is None:
        args.segment_options = f"--recipe {run_folder}" if run_folder else ""
    config = {"shape": shape, "voxels": int(np.prod(shape)), "model": str(model),
              "source": args.source, "preprocess": method, "preprocess_options": options,
              "block_size": block, "halo": args.halo, "workers": workers,
              "memory_limit": args.memory_limit, "predict_options": args.predict_options,
              "segment_options": args.segment_options, "speedup_shape": args.speedup_shape,
              "crop_shape": args.crop_shape, "metrics": args.metrics}
    old = chain.state.get("config")
    if old and (tuple(old["shape"]), old["preprocess"], old["source"]) != (
            shape, method, args.source):
        raise SystemExit(f"{work} holds a chain of shape {old['shape']} (preprocess "
                         f"{old['preprocess']}): use another --workdir")
    chain.state["config"] = config
    chain.save()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: kills the CLI tree
    emkit = emkit_command(args)
    common = ["--blockwise", "--block-size", ",".join(map(str, block)),
              "--memory-limit", args.memory_limit]
    predict_extra = shlex.split(args.predict_options) + ["--preprocess", "none"]
    segment_extra = shlex.split(args.segment_options)
    source = None

    def get_source():
        nonlocal source
        if source is None:
            t = time.perf_counter()
            source = Source(args.source, method, shape, options)
            print(f"source {source.raw.shape}, {source.bodies} bodies, tiles {source.tiles}, "
                  f"preprocess {method}: {time.perf_counter() - t:.1f} s",
                  file=sys.stderr, flush=True)
        return source

    def build(key, folder, region):
        rec = chain.state["stages"].get(key)
        if rec and rec.get("done"):
            return
        rec = chain.record(key, voxels=int(np.prod(region)), workers=1,
                           volume="x".join(map(str, region)))
        attempt = {"started": time.strftime("%Y-%m-%d %H:%M:%S")}
        rec["attempts"].append(attempt)
        t, cpu = time.perf_counter(), time.process_time()
        with TreeMemory(os.getpid()) as memory:  # this process: the build runs in it
            chunks, written = write_volume(get_source(), folder, region, block)
        attempt.update(load=round(os.getloadavg()[0], 2),
                       seconds=round(time.perf_counter() - t, 1), rc=0, chunks=chunks,
                       cpu_seconds=round(time.process_time() - cpu, 1),
                       written=written, peak_rss_total_mib=memory.total // MIB,
                       peak_rss_worker_mib=memory.total // MIB,
                       peak_rss_main_mib=memory.total // MIB)
        rec["done"] = True
        chain.save()

    def blockwise_pair(prefix, folder, raw, voxels, volume, n):
        folder.mkdir(parents=True, exist_ok=True)
        affs, seg = f"{folder}/affs.zarr:affs", f"{folder}/seg.zarr:seg"
        chain.run(f"{prefix}predict", [*emkit, "predict", "--model", model, "--input", raw,
                                       "--output", affs, *common, "--workers", n,
                                       *predict_extra],
                  voxels=voxels, workers=n, volume=volume, output=affs)
        chain.run(f"{prefix}segment", [*emkit, "segment", affs, "--output", seg, *common,
                                       "--workers", n, "--halo", args.halo, *segment_extra],
                  voxels=voxels, workers=n, volume=volume, output=seg)
        return affs, seg

    def evaluate(key, pred, gt, voxels, volume):
        return chain.run(key, [*emkit, "evaluate", pred, gt, "--json", "--metrics",
                               args.metrics], voxels=voxels, workers=1, volume=volume,
                         capture=True)

    full = "x".join(map(str, shape))
    n_max = workers[-1]
    try:
        if "build" in stages:
            build("build", work, shape)
        if "speedup" in stages and args.speedup_shape != "full":
            sub = parse_shape(args.speedup_shape)
            sub = tuple(min(a, b) for a, b in zip(sub, shape))
            name = "x".join(map(str, sub))
            build("speedup/build", work / "speedup", sub)
            for n in workers:
                blockwise_pair(f"speedup/w{n}/", work / "speedup" / f"w{n}",
                               work / "speedup" / "raw.zarr", np.prod(sub), name, n)
        if "speedup" in stages and args.speedup_shape == "full":
            for n in workers[:-1]:
                blockwise_pair(f"speedup/w{n}/", work / "speedup" / f"w{n}", work / "raw.zarr",
                               np.prod(shape), full, n)
        chain_folder = work / "chain"
        affs, seg = f"{chain_folder}/affs.zarr:affs", f"{chain_folder}/seg.zarr:seg"
        if "predict" in stages or "segment" in stages:
            chain_folder.mkdir(exist_ok=True)
        if "predict" in stages:
            chain.run("predict", [*emkit, "predict", "--model", model, "--input",
                                  work / "raw.zarr", "--output", affs, *common,
                                  "--workers", n_max, *predict_extra],
                      voxels=np.prod(shape), workers=n_max, volume=full, output=affs)
        if "segment" in stages:
            chain.run("segment", [*emkit, "segment", affs, "--output", seg, *common,
                                  "--workers", n_max, "--halo", args.halo, *segment_extra],
                      voxels=np.prod(shape), workers=n_max, volume=full, output=seg)
        if "evaluate" in stages:
            evaluate("evaluate", seg, work / "gt.zarr", np.prod(shape), full)
        if "crop" in stages:
            sub = tuple(min(a, b) for a, b in zip(parse_shape(args.crop_shape), shape))
            name = "x".join(map(str, sub))
            crop = work / "crop"
            build("crop/build", crop, sub)
            raw, gt, voxels = crop / "raw.zarr", crop / "gt.zarr", np.prod(sub)
            whole_affs, whole_seg = f"{crop}/whole_affs.zarr:affs", f"{crop}/whole_seg.zarr:seg"
            chain.run("crop/whole/predict", [*emkit, "predict", "--model", model, "--input",
                                             raw, "--output", whole_affs, "--quiet",
                                             *predict_extra],
                      voxels=voxels, workers=1, volume=name, output=whole_affs)
            chain.run("crop/whole/segment", [*emkit, "segment", whole_affs, "--output",
                                             whole_seg, *segment_extra],
                      voxels=voxels, workers=1, volume=name, output=whole_seg)
            block_affs, block_seg = blockwise_pair("crop/blockwise/", crop / "blockwise", raw,
                                                   voxels, name, n_max)
            evaluate("crop/whole/evaluate", whole_seg, gt, voxels, name)
            evaluate("crop/blockwise/evaluate", block_seg, gt, voxels, name)
            evaluate("crop/blockwise_vs_whole", block_seg, whole_seg, voxels, name)
            # --dust-size means watershed fragments in memory but whole objects blockwise;
            # without it both compute the same merges: segment both again (seconds).
            dust0 = {}
            for how, affs_spec, extra in (("whole", whole_affs, []),
                                          ("blockwise", block_affs, [*common, "--workers",
                                                                     n_max, "--halo",
                                                                     args.halo])):
                dust0[how] = f"{crop}/{how}_seg_dust0.zarr:seg"
                chain.run(f"crop/{how}/segment_dust0",
                          [*emkit, "segment", affs_spec, "--output", dust0[how], *extra,
                           *segment_extra, "--dust-size", "0"],
                          voxels=voxels, workers=n_max if extra else 1, volume=name,
                          output=dust0[how])
                evaluate(f"crop/{how}/evaluate_dust0", dust0[how], gt, voxels, name)
            evaluate("crop/blockwise_vs_whole_dust0", dust0["blockwise"], dust0["whole"],
                     voxels, name)
            rec = chain.state["stages"].setdefault("crop/affinities", {})
            if "max_abs_diff" not in rec and output_exists(block_affs) \
                    and output_exists(whole_affs):
                rec["max_abs_diff"] = max_abs_diff(block_affs, whole_affs)
                chain.save()
    except StageFailed as failure:
        print(report(chain.state), flush=True)
        raise SystemExit(str(failure)) from None
    except BaseException:
        print(report(chain.state), flush=True)
        raise
    print(report(chain.state), flush=True)


def max_abs_diff(a, b):
    """Largest |a - b| of two Zarr arrays of one shape, read a z-slab at a time."""
    import zarr

    def open_spec(spec):
        path, _, key = spec.partition(":")
        return zarr.open_array(store=path, path=key, mode="r")

    x, y = open_spec(a), open_spec(b)
    step = max(1, x.chunks[-3])
    worst = 0.0
    for z in range(0, x.shape[-3], step):
        region = (Ellipsis, slice(z, z + step), slice(None), slice(None))
        worst = max(worst, float(np.abs(x[region] - y[region]).max()))
    return worst


# --------------------------------------------------------------------------- the table


def report(state):
    """The Markdown table of results.json."""
    stages, config = state.get("stages", {}), state.get("config", {})
    rows = [("| stage | volume | workers | seconds | Mvoxel/s | peak RSS, one worker (MiB) | "
             "peak RSS, all (MiB) | peak RSS, CLI process (MiB) | CPU use (cores) | machine load | "
             "speed-up |"), "|---|---|---|---|---|---|---|---|---|---|---|"]
    limit = config.get("memory_limit", "?")
    base = {}
    order = ["build", "speedup/build"]
    order += sorted((k for k in stages if k.startswith("speedup/w")),
                    key=lambda k: (k.rsplit("/", 1)[1] != "predict", int(k.split("/")[1][1:])))
    order += ["predict", "segment", "evaluate", "crop/build", "crop/whole/predict",
              "crop/whole/segment", "crop/blockwise/predict", "crop/blockwise/segment",
              "crop/whole/evaluate", "crop/blockwise/evaluate"]
    chain_seconds, complete = 0.0, True
    for key in order:
        rec = stages.get(key)
        if rec is None:
            if key in ("build", "predict", "segment", "evaluate"):
                complete = False
            continue
        seconds, cpu, peak = totals(rec)
        stage = key.split("/")[-1]
        if key.startswith("speedup/"):
            stage = f"speed-up {stage}"
        elif key.startswith("crop/"):
            stage = "crop " + " ".join(key.split("/")[1:])
        status = "" if rec.get("done") else (" (failed)" if rec.get("failed") else " (unfinished)")
        attempts = len(rec.get("attempts", []))
        if attempts > 1:
            status += f" ({attempts} attempts)"
        if rec.get("note"):
            status += f" ({rec['note']})"
        if any(a.get("capped") for a in rec.get("attempts", [])):
            status += " (killed at --rss-cap)"
        speedup = ""
        if key.startswith("speedup/w") or (key in ("predict", "segment")
                                           and config.get("speedup_shape") == "full"):
            w = rec.get("workers")
            pair = (rec.get("volume"), stage.split()[-1])
            if rec.get("done"):
                if pair not in base:
                    base[pair] = (w, seconds)
                elif base[pair][0] != w and seconds:
                    speedup = f"{base[pair][1] / seconds:.2f}x ({base[pair][0]} -> {w})"
        if key in ("build", "predict", "segment", "evaluate"):
            chain_seconds += seconds
            complete &= bool(rec.get("done"))
        mvox = rec.get("voxels", 0) / 1e6 / seconds if seconds else 0
        rows.append(f"| {stage}{status} | {rec.get('volume', '')} | {rec.get('workers', '')} | "
                    f"{seconds:.1f} | {mvox:.2f} | {peak['peak_rss_worker_mib']} | "
                    f"{peak['peak_rss_total_mib']} | {peak['peak_rss_main_mib']} | "
                    f"{cpu / seconds if cpu and seconds else 0:.2f} | {peak['load']:.1f} | "
                    f"{speedup} |")
    title = (f"volume {'x'.join(map(str, config.get('shape', [])))} "
             f"({config.get('voxels', 0) / 1e9:.2f} Gvoxel), blocks {config.get('block_size')}, "
             f"--memory-limit {limit} per worker, model {config.get('model')}")
    lines = [title, "", *rows, ""]
    lines.append(f"chain (build + predict + segment + evaluate): {chain_seconds:.0f} s "
                 f"({chain_seconds / 3600:.2f} h){'' if complete else ', incomplete'}")
    try:
        from dask.utils import parse_bytes

        cap = parse_bytes(limit) // MIB
    except (ImportError, ValueError, TypeError):
        cap = None
    over = [f"{k} ({totals(r)[2]['peak_rss_worker_mib']} MiB)" for k, r in stages.items()
            if "--blockwise" in r.get("cmd", [])
            and cap and totals(r)[2]["peak_rss_worker_mib"] > cap]
    if cap:
        lines.append(f"every Dask worker under --memory-limit {limit} ({cap} MiB): "
                     + ("yes" if not over else "NO: " + ", ".join(over)))
    evaluation = (stages.get("evaluate") or {}).get("metrics")
    if evaluation:
        lines.append(f"whole volume vs ground truth: {_metrics(evaluation, config)}")
    line = _crop_line(stages, "", f"crop {config.get('crop_shape')}", (".4f", "+.4f", ".4f"),
                      "; blockwise against whole-volume segmentation: adapted Rand error")
    if line:
        diff = (stages.get("crop/affinities") or {}).get("max_abs_diff")
        if diff is not None:
            line += f"; affinities max |difference| {diff:.2g}"
        lines.append(line)
    line = _crop_line(stages, "_dust0", "crop, segment options + --dust-size 0 (the same "
                      "merges in both)", (".6f", "+.2g", ".2g"), "; against each other")
    if line:
        lines.append(line)
    return "\n".join(lines)


def _crop_line(stages, suffix: str, head: str, formats, versus_text: str) -> str | None:
    """The crop's adapted Rand errors, whole-volume and blockwise (stages ending in
    ``suffix``), and of the two against each other; None before both are evaluated.
    ``formats``: of the errors, of their difference, of the two against each other."""
    whole = (stages.get(f"crop/whole/evaluate{suffix}") or {}).get("metrics")
    blockwise = (stages.get(f"crop/blockwise/evaluate{suffix}") or {}).get("metrics")
    if not (whole and blockwise):
        return None
    value, gap, other = formats
    a, b = whole.get("adapted_rand_error"), blockwise.get("adapted_rand_error")
    line = (f"{head}: adapted Rand error whole-volume {a:{value}}, blockwise {b:{value}}, "
            f"difference {b - a:{gap}}")
    versus = (stages.get(f"crop/blockwise_vs_whole{suffix}") or {}).get("metrics")
    if versus:
        line += f"{versus_text} {versus.get('adapted_rand_error'):{other}}"
    return line


def _metrics(metrics, config):
    names = config.get("metrics", "adapted_rand_error").split(",")
    return ", ".join(f"{k} {metrics[k]:.4f}" for k in names
                     if isinstance(metrics.get(k), (int, float)))


if __name__ == "__main__":
    main()
