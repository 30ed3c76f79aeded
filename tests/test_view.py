"""``emkit view``: the layers, their kinds and voxel sizes as the browser gets them, lazy
reads of large Zarr volumes, and the command's URL, SIGTERM and the lines that
``emkit segment`` and ``emkit recipe run`` print for it."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
import zarr

from emkit.cli.main import main
from emkit.errors import InputError
from emkit.io import _zarr, write_volume
from emkit.view import ServedArray, plan_layers, serve, view_command

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    """raw.h5:raw (uint8), pred.zarr:affs (3 channels first), seg.zarr:seg (uint64),
    each with a voxel size of its own."""
    d = tmp_path_factory.mktemp("view")
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (4, 24, 20), dtype=np.uint8)
    affs = rng.random((3, 4, 24, 20), dtype=np.float32)
    seg = (np.arange(4 * 24 * 20).reshape(4, 24, 20) // 50).astype(np.uint64)
    write_volume(f"{d}/raw.h5:raw", raw, voxel_size_nm=(40, 4, 4))
    write_volume(f"{d}/pred.zarr:affs", affs, voxel_size_nm=(40, 8, 8))
    write_volume(f"{d}/seg.zarr:seg", seg, voxel_size_nm=(50, 5, 5), offset_nm=(100, 0, 10))
    specs = [f"{d}/raw.h5:raw", f"{d}/pred.zarr:affs", f"{d}/seg.zarr:seg"]
    return d, specs, {"raw": raw, "affs": affs, "seg": seg}


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return response.read()


def _volume_url(viewer, layer) -> str:
    """The server address of a layer's data (its ``python://volume/KEY`` source)."""
    import neuroglancer

    key = layer.source[0].url.removeprefix("python://volume/")
    return f"{neuroglancer.server.get_server_url()}/neuroglancer/%s/{key}"


def test_layers_get_their_kind_voxel_size_and_names(volumes):
    _, specs, _ = volumes
    layers = plan_layers([(None, s) for s in specs])
    assert [(a.name, a.kind, a.voxel_size_nm, a.voxel_offset) for a in layers] == [
        ("raw", "image", (40.0, 4.0, 4.0), (0, 0, 0)),
        ("affs", "affinities", (40.0, 8.0, 8.0), (0, 0, 0)),
        ("seg", "segmentation", (50.0, 5.0, 5.0), (2, 0, 2)),
    ]
    assert [a.note for a in layers] == [None] * 3
    # an explicit kind wins; two volumes of one name are told apart by their specs
    seg_as_image, raw = plan_layers([("image", specs[2]), (None, specs[0])])
    assert seg_as_image.kind == "image" and raw.kind == "image"
    twice = plan_layers([(None, specs[0]), (None, specs[0])])
    assert [a.name for a in twice] == [specs[0], f"{specs[0]} (2)"]


def test_a_volume_without_voxel_size_borrows_one_of_the_same_shape(tmp_path, volumes):
    _, specs, data = volumes
    np.save(tmp_path / "affs.npy", data["affs"])  # .npy holds no voxel size
    _, affs = plan_layers([(None, specs[0]), (None, str(tmp_path / "affs.npy"))])
    assert affs.voxel_size_nm == (40.0, 4.0, 4.0) and specs[0] in affs.note
    (alone,) = plan_layers([(None, str(tmp_path / "affs.npy"))])
    assert alone.voxel_size_nm == (1.0, 1.0, 1.0) and "1 nm" in alone.note


def test_the_viewer_serves_each_layer_with_its_type_and_voxel_size(volumes):
    _, specs, data = volumes
    layers = plan_layers([(None, s) for s in specs])
    with serve(layers, port=0) as viewer:
        url = viewer.get_viewer_url()
        assert url.startswith("http://127.0.0.1:")
        assert b"<html" in _get(url).lower()  # the neuroglancer client
        state = viewer.state
        assert [(a.name, a.type) for a in state.layers] == [
            ("raw", "image"), ("affs", "image"), ("seg", "segmentation")]
        assert state.dimensions.names == ("x", "y", "z")
        assert list(state.dimensions.scales) == pytest.approx([4e-9, 4e-9, 40e-9])
        assert state.layers["raw"].opacity == 1.0
        assert "emitRGB" in state.layers["affs"].shader
        infos = {a.name: json.loads(_get(_volume_url(viewer, a) % "info")) for a in state.layers}
        assert infos["raw"]["coordinateSpace"] == {
            "z": [40e-9, "m"], "y": [4e-9, "m"], "x": [4e-9, "m"]}
        assert infos["affs"]["coordinateSpace"] == {
            "c^": [1, ""], "z": [40e-9, "m"], "y": [8e-9, "m"], "x": [8e-9, "m"]}
        assert infos["seg"]["coordinateSpace"] == {
            "z": [50e-9, "m"], "y": [5e-9, "m"], "x": [5e-9, "m"]}
        assert [infos[n]["volumeType"] for n in ("raw", "affs", "seg")] == [
            "image", "image", "segmentation"]
        assert [int(v) for v in infos["seg"]["voxelOffset"]] == [2, 0, 2]
        assert infos["affs"]["shape"] == [3, 4, 24, 20]
        # a chunk as the browser asks for it holds the file's voxels
        chunk = _get(_volume_url(viewer, state.layers["affs"]) % "npz"
                     + "/1,1,1,1/0,1,2,3/3,3,10,9")
        np.testing.assert_array_equal(np.load(io.BytesIO(zlib.decompress(chunk))),
                                      data["affs"][:, 1:3, 2:10, 3:9])
        # a small segmentation gets 3D meshes
        mesh = _get(_volume_url(viewer, state.layers["seg"]) % "mesh" + "/3")
        assert len(mesh) > 0
    with pytest.raises(urllib.error.URLError):  # stopped with the block
        _get(url)


def test_large_zarr_volumes_are_read_only_where_asked(tmp_path, monkeypatch):
    """A 2000 x 4096 x 4096 uint8 volume (33 GB; its chunks never written) and a float
    one: starting the viewer reads nothing of the first and one crop of a section of the
    second (for its contrast); a chunk request reads that chunk's box only."""
    for key, dtype in (("raw", "uint8"), ("probs", "float32"), ("seg", "uint64")):
        zarr.create_array(store=str(tmp_path / "big.zarr"), name=key, shape=(2000, 4096, 4096),
                          chunks=(8, 256, 256), dtype=dtype, fill_value=0,
                          attributes={"resolution": [40, 4, 4]})
    reads = []
    real_read = _zarr.read

    def counting_read(path, key, box):
        reads.append((key, tuple(s.stop - s.start for s in box)))
        return real_read(path, key, box)

    monkeypatch.setattr(_zarr, "read", counting_read)
    layers = plan_layers([(None, f"{tmp_path}/big.zarr:{k}") for k in ("raw", "probs", "seg")])
    assert [a.kind for a in layers] == ["image", "image", "segmentation"]
    with serve(layers) as viewer:
        assert reads == [("probs", (1, 512, 512))]  # the middle section's central crop
        volumes = viewer.volume_manager.volumes.values()
        assert all(isinstance(v.data._data, ServedArray) for v in volumes)
        reads.clear()
        chunk = _get(_volume_url(viewer, viewer.state.layers["raw"]) % "npz"
                     + "/1,1,1/1000,2048,2048/1004,2112,2112")
        assert np.load(io.BytesIO(zlib.decompress(chunk))).shape == (4, 64, 64)
        assert reads == [("raw", (4, 64, 64))]
        with pytest.raises(urllib.error.HTTPError) as refused:  # no meshes of 268 GB
            _get(_volume_url(viewer, viewer.state.layers["seg"]) % "mesh" + "/1")
        assert refused.value.code == 405
        assert reads == [("raw", (4, 64, 64))]


def test_a_port_in_use_is_one_line(volumes, capsys):
    _, specs, _ = volumes
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["view", specs[0], "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("emkit: error: cannot serve on 127.0.0.1:") and "\n" not in err


def test_the_command_prints_the_url_once_answering_and_sigterm_stops_it(volumes):
    d, specs, _ = volumes
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    view = subprocess.Popen([sys.executable, "-m", "emkit.cli.main", "view", *specs[:2],
                             "--segmentation", specs[2]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=d)
    try:
        line = view.stdout.readline()  # blocks until the URL is printed
        assert line.startswith("neuroglancer: http://127.0.0.1:"), (
            line, view.stderr.read() if view.poll() is not None else "")
        assert b"<html" in _get(line.split()[1]).lower()
        described = [view.stdout.readline().split() for _ in range(3)]
        assert [(w[0], w[1], w[2]) for w in described] == [
            ("raw", "image", specs[0]), ("affs", "affinities", specs[1]),
            ("seg", "segmentation", specs[2])]
    finally:
        view.send_signal(signal.SIGTERM)
        code = view.wait(timeout=30)
    err = view.stderr.read()
    assert code == 130 and err.strip().splitlines() == ["emkit: interrupted"], err
    with pytest.raises(urllib.error.URLError):
        _get(line.split()[1])


def test_view_command_quotes_paths():
    assert view_command("a.h5:raw", None, Path("my run/v.h5:seg")) == \
        "emkit view a.h5:raw 'my run/v.h5:seg'"


def test_segment_ends_with_the_view_line(volumes, tmp_path, capsys):
    _, specs, _ = volumes
    out = f"{tmp_path}/seg.zarr:seg"
    assert main(["segment", specs[1], "--output", out]) == 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"view: emkit view {specs[1]} {out}"
    layers = plan_layers([(None, s) for s in last.split()[3:]])
    assert [a.kind for a in layers] == ["affinities", "segmentation"]


def test_plan_layers_needs_a_volume():
    with pytest.raises(InputError, match="no volumes"):
        plan_layers([])
