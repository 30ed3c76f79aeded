"""Malformed input to every subcommand: exit status 2, one line on stderr that names the
input, no traceback, and every file that was there before is unchanged (nothing new either).

Each case runs ``emkit`` in this process, in a folder of small hand-made inputs (a few
tiny models, volumes and recipe files), with the folder as the working directory so that
default outputs (``runs/``, ``mlruns/``) would show up as changes too.
"""

import hashlib
import os

import h5py
import keras
import numpy as np
import pytest
import tifffile

from emkit.cli.main import main
from emkit.inference.testing import affinity_model, mean_model
from emkit.io import write_volume


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_input")
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (5, 23, 19), dtype=np.uint8)
    write_volume(d / "raw.h5:volumes/raw", raw, voxel_size_nm=(40, 4, 4))
    tifffile.imwrite(d / "image.tif", raw[0])
    np.save(d / "raw4d.npy", np.zeros((2, 5, 23, 19), np.float32))
    np.save(d / "bmap.npy", rng.random((2, 16, 16)).astype(np.float32))
    np.save(d / "bmap5.npy", rng.random((2, 16, 16)).astype(np.float32) * 5)
    np.save(d / "bmap_small.npy", rng.random((2, 8, 8)).astype(np.float32))
    np.save(d / "seg.npy", np.arange(512, dtype=np.uint32).reshape(2, 16, 16))
    np.save(d / "seg_small.npy", np.arange(128, dtype=np.uint32).reshape(2, 8, 8))
    np.save(d / "gt_float.npy", np.ones((2, 16, 16), np.float32))
    np.save(d / "gt_zero.npy", np.zeros((2, 16, 16), np.uint32))
    np.save(d / "empty_a.npy", np.zeros((0, 64, 64), np.uint32))
    np.save(d / "empty_b.npy", np.zeros((0, 64, 64), np.uint32))
    np.save(d / "affs.npy", rng.random((3, 4, 16, 16)).astype(np.float32))
    np.save(d / "affs_last.npy", rng.random((4, 16, 16, 3)).astype(np.float32))
    np.save(d / "affs_two.npy", rng.random((2, 4, 16, 16)).astype(np.float32))
    np.save(d / "raw_big.npy", rng.integers(0, 256, (2, 8, 8), dtype=np.uint8))
    np.save(d / "labels4d.npy", np.zeros((3, 2, 8, 8), np.int32))
    np.save(d / "one_channel.npy", np.zeros((1, 2, 8, 8), np.float32))
    (d / "not_a_tiff.tif").write_text("text, not a TIFF")
    (d / "text.keras").write_text("hello")
    (d / "regular.txt").write_text("x")
    (d / "existing.tif").write_bytes(b"do not touch")
    mean_model(3, (4, 10, 10)).save(d / "mean.keras")
    mean_model(2, (9, 9)).save(d / "mean2d.keras")
    affinity_model([(1, 0, 0), (0, 1, 0), (0, 0, 1)], (4, 10, 10)).save(d / "affs.keras")
    x = keras.Input((4, 10, 10, 1))
    keras.Model(x, keras.layers.Lambda(lambda t: t * 2)(x)).save(d / "lambda.keras")
    (d / "member_not_model.yaml").write_text(
        "members:\n- path: regular.txt\n  weight: 1.0\n  sha256: "
        + hashlib.sha256(b"x").hexdigest() + "\n")
    (d / "member_keys.yaml").write_text("members:\n- path: mean.keras\n  weight: 1.0\n")
    (d / "bad.yaml").write_text("train:\n  max_steps: [1, 2\n")
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "preview_unknown.yaml").write_text("dataset: isbi2012\nmodel: n4\ncolour: red\n")
    (d / "space_bad.yaml").write_text("train.learning_rate: {type: bogus}\n")
    with h5py.File(d / "transforms_bad.h5", "w") as f:
        f["nothing"] = np.zeros(3)
    return d


def snapshot(d):
    """Every file under ``d`` with its size and content hash."""
    found = {}
    for root, _, files in os.walk(d):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, d)] = hashlib.sha256(f.read()).hexdigest()
    return found


# (id, arguments, words that the message must hold). "{d}" is the folder of inputs.
CASES = [
    # ------------------------------------------------------------------ evaluate
    ("evaluate-missing-pred", "evaluate {d}/nope.tif {d}/seg.npy", ["nope.tif", "not found"]),
    ("evaluate-shapes-differ", "evaluate {d}/bmap.npy {d}/seg_small.npy", ["shape", "must match"]),
    ("evaluate-threshold-negative", "evaluate {d}/bmap.npy {d}/seg.npy --threshold -1",
     ["--threshold", "-1"]),
    ("evaluate-threshold-above-1", "evaluate {d}/bmap.npy {d}/seg.npy --threshold 2",
     ["--threshold", "2"]),
    ("evaluate-unknown-metric", "evaluate {d}/bmap.npy {d}/seg.npy --metrics rand,bogus",
     ["bogus"]),
    ("evaluate-float-gt", "evaluate {d}/bmap.npy {d}/gt_float.npy", ["gt_float.npy", "floats"]),
    ("evaluate-empty-volumes", "evaluate {d}/empty_a.npy {d}/empty_b.npy", ["empty", "(0, 64, 64)"]),
    ("evaluate-all-zero-gt", "evaluate {d}/seg.npy {d}/gt_zero.npy",
     ["gt_zero.npy", "no labelled voxel", "nothing would be scored"]),
    ("evaluate-voxel-size-count", "evaluate {d}/seg.npy {d}/seg.npy --voxel-size 1,2",
     ["--voxel-size"]),
    ("evaluate-voxel-size-text", "evaluate {d}/seg.npy {d}/seg.npy --voxel-size a,b,c",
     ["--voxel-size"]),
    ("evaluate-unknown-option", "evaluate {d}/seg.npy {d}/seg.npy --bogus", ["--bogus"]),
    ("evaluate-missing-gt", "evaluate {d}/seg.npy", ["GT"]),
    ("evaluate-bad-kind", "evaluate {d}/seg.npy {d}/seg.npy --pred-kind cells", ["--pred-kind"]),
    ("evaluate-not-a-tiff", "evaluate {d}/not_a_tiff.tif {d}/seg.npy", ["not_a_tiff.tif"]),
    ("evaluate-missing-h5-key", "evaluate {d}/raw.h5:volumes/nope {d}/seg.npy", ["volumes/nope"]),
    # ------------------------------------------------------------------ data
    ("data-check-unknown", "data check nosuchset", ["nosuchset"]),
    ("data-path-unknown-role", "data path isbi2012 bogus", ["bogus"]),
    ("data-check-missing-root", "data check medulla --root {d}/no_data_here", ["medulla"]),
    ("data-unknown-action", "data frobnicate", ["frobnicate"]),
    # ------------------------------------------------------------------ model
    ("model-show-unknown", "model show nosucharch", ["nosucharch"]),
    ("model-show-bad-value", "model show n4 width_factor=abc", ["width_factor"]),
    ("model-show-unknown-key", "model show n4 colour=1", ["colour"]),
    ("model-show-not-key-value", "model show n4 width_factor", ["width_factor"]),
    # ------------------------------------------------------------------ segment
    ("segment-missing-input", "segment {d}/nope.npy --output {d}/out/seg.tif", ["nope.npy"]),
    ("segment-labels-as-input", "segment {d}/seg.npy --output {d}/out/seg.tif",
     ["seg.npy", "uint32"]),
    ("segment-channels-last-affinities", "segment {d}/affs_last.npy --output {d}/out/seg.tif",
     ["affs_last.npy", "channels last", "(c, z, y, x)"]),
    ("segment-two-channel-affinities", "segment {d}/affs_two.npy --output {d}/out/seg.tif",
     ["affs_two.npy", "at least 3 channels"]),
    ("segment-output-exists", "segment {d}/bmap.npy --output {d}/existing.tif",
     ["existing.tif", "--overwrite"]),
    ("segment-negative-halo", ("segment {d}/a.zarr:affs --output {d}/out/s.zarr:seg --blockwise "
     "--halo -4"), ["--halo", "-4"]),
    ("segment-bad-thresholds", "segment {d}/affs.npy --output {d}/out/seg.h5:seg --thresholds x",
     ["--thresholds"]),
    ("segment-thresholds-without-pattern", ("segment {d}/affs.npy --output {d}/out/seg.h5:seg "
     "--thresholds 0.1,0.2"), ["{threshold}"]),
    ("segment-output-under-a-file", "segment {d}/bmap.npy --output {d}/regular.txt/seg.tif",
     ["regular.txt", "not a folder"]),
    ("segment-fragments-for-boundaries", ("segment {d}/bmap.npy --output {d}/out/seg.tif "
     "--fragments {d}/out/frag.tif"), ["--fragments"]),
    ("segment-unknown-recipe", "segment {d}/bmap.npy --output {d}/out/seg.tif --recipe nosuch",
     ["nosuch"]),
    ("segment-map-outside-0-1", "segment {d}/bmap5.npy --output {d}/out/seg.tif", ["bmap5.npy"]),
    ("segment-blockwise-npy", "segment {d}/affs.npy --output {d}/out/s.zarr:seg --blockwise",
     ["affs.npy"]),
    ("segment-bad-seeds", "segment {d}/bmap.npy --output {d}/out/seg.tif --seeds sprinkle",
     ["--seeds"]),
    # ------------------------------------------------------------------ export
    ("export-unknown-format", "export tiff {d}/bmap.npy {d}/out/x.tif", ["tiff"]),
    ("export-snemi-from-floats", "export snemi3d {d}/bmap.npy {d}/out/x.tif", ["bmap.npy"]),
    ("export-cremi-suffix", "export cremi {d}/seg.npy {d}/out/x.tif", [".hdf"]),
    ("export-cremi-raw-shape", "export cremi {d}/seg.npy {d}/out/x.hdf --raw {d}/raw_big.npy",
     ["raw"]),
    ("export-output-exists", "export isbi2012 {d}/bmap.npy {d}/existing.tif",
     ["existing.tif", "--overwrite"]),
    ("export-channels-last-affinities", "export isbi2012 {d}/affs_last.npy {d}/out/x.tif",
     ["affs_last.npy", "channels first"]),
    ("export-bad-offset", "export cremi {d}/seg.npy {d}/out/x.hdf --offset 1,2", ["--offset"]),
    ("export-missing-input", "export isbi2012 {d}/nope.npy {d}/out/x.tif", ["nope.npy"]),
    # ------------------------------------------------------------------ augment
    ("augment-zero-samples", ("augment preview --dataset isbi2012 --model n4 --samples 0 "
     "--out {d}/out/g.png"), ["--samples", "0"]),
    ("augment-unknown-recipe", "augment preview nosuchrecipe --out {d}/out/g.png",
     ["nosuchrecipe"]),
    ("augment-preview-unknown-key", "augment preview {d}/preview_unknown.yaml --out {d}/out/g.png",
     ["colour"]),
    ("augment-recipe-bad-set", "augment preview isbi_n4 --set train.bogus=1 --out {d}/out/g.png",
     ["bogus"]),
    ("augment-recipe-with-model", "augment preview isbi_n4 --model n4 --out {d}/out/g.png",
     ["--model", "--set"]),
    ("augment-no-model", "augment preview --dataset isbi2012 --out {d}/out/g.png", ["model"]),
    ("augment-out-exists", "augment preview isbi_n4 --out {d}/existing.tif", ["existing.tif",
                                                                              "--force"]),
    ("augment-unknown-augmentation", ("augment preview --dataset isbi2012 --model n4 "
     "--augment flip,sparkle --out {d}/out/g.png"), ["sparkle"]),
    # ------------------------------------------------------------------ predict
    ("predict-missing-model", ("predict --model {d}/nope.keras --input {d}/raw.h5:volumes/raw "
     "--output {d}/out/p.h5:p"), ["nope.keras"]),
    ("predict-text-model", ("predict --model {d}/text.keras --input {d}/raw.h5:volumes/raw "
     "--output {d}/out/p.h5:p"), ["text.keras", "not a Keras model"]),
    ("predict-lambda-model", ("predict --model {d}/lambda.keras --input {d}/raw.h5:volumes/raw "
     "--output {d}/out/p.h5:p"), ["lambda.keras", "Lambda"]),
    ("predict-h5-as-model", ("predict --model {d}/raw.h5 --input {d}/raw.h5:volumes/raw "
     "--output {d}/out/p.h5:p"), ["raw.h5"]),
    ("predict-4d-input", ("predict --model {d}/mean.keras --input {d}/raw4d.npy "
     "--output {d}/out/p.h5:p"), ["raw4d.npy", "(2, 5, 23, 19)"]),
    ("predict-output-exists", ("predict --model {d}/mean2d.keras --input {d}/image.tif "
     "--output {d}/existing.tif"), ["existing.tif", "--overwrite"]),
    ("predict-bad-tile", ("predict --model {d}/mean.keras --input {d}/raw.h5:volumes/raw "
     "--output {d}/out/p.h5:p --tile a,b,c"), ["--tile"]),
    ("predict-negative-overlap", ("predict --model {d}/mean.keras --input {d}/raw.h5:volumes/raw "
     "--output {d}/out/p.h5:p --overlap -1"), ["--overlap"]),
    ("predict-zero-batch", ("predict --model {d}/mean.keras --input {d}/raw.h5:volumes/raw "
     "--output {d}/out/p.h5:p --batch-size 0"), ["--batch-size"]),
    ("predict-ensemble-member-not-model", ("predict --model {d}/member_not_model.yaml "
     "--input {d}/raw.h5:volumes/raw --output {d}/out/p.h5:p"), ["regular.txt"]),
    ("predict-ensemble-member-keys", ("predict --model {d}/member_keys.yaml "
     "--input {d}/raw.h5:volumes/raw --output {d}/out/p.h5:p"), ["sha256"]),
    ("predict-3d-model-on-image", ("predict --model {d}/mean.keras --input {d}/image.tif "
     "--output {d}/out/p.tif"), ["3D", "(23, 19)"]),
    ("predict-tta-offsets", ("predict --model {d}/affs.keras --input {d}/raw.h5:volumes/raw "
     "--output {d}/out/p.h5:p --tta --offsets 1,0,0"), ["--offsets"]),
    ("predict-unknown-output-format", ("predict --model {d}/mean.keras --input "
     "{d}/raw.h5:volumes/raw --output {d}/out/p.xyz"), ["p.xyz"]),
    ("predict-missing-input", ("predict --model {d}/mean.keras --input {d}/nope.h5:raw "
     "--output {d}/out/p.h5:p"), ["nope.h5"]),
    # ------------------------------------------------------------------ recipe
    ("recipe-show-unknown", "recipe show nosuchrecipe", ["nosuchrecipe"]),
    ("recipe-show-bad-yaml", "recipe show {d}/bad.yaml", ["bad.yaml", "line 3, column 1"]),
    ("recipe-show-set-without-equals", "recipe show isbi_n4 --set train.max_steps",
     ["train.max_steps"]),
    ("recipe-show-set-wrong-type", "recipe show isbi_n4 --set train.max_steps=abc",
     ["train.max_steps"]),
    ("recipe-show-set-unknown-key", "recipe show isbi_n4 --set train.colour=1", ["colour"]),
    ("recipe-show-list-yaml", "recipe show {d}/list.yaml", ["list.yaml"]),
    ("recipe-run-output-is-a-file", "recipe run isbi_n4 --output {d}/regular.txt",
     ["regular.txt", "is a file"]),
    ("recipe-run-negative-steps", "recipe run isbi_n4 --set train.max_steps=-1",
     ["train.max_steps"]),
    ("recipe-run-resume-nothing", "recipe run isbi_n4 --resume --set run.output_root={d}/runs_none",
     ["--resume"]),
    ("recipe-run-unknown-data", "recipe run isbi_n4 --set data.name=nosuchdata", ["nosuchdata"]),
    ("recipe-run-missing-file", "recipe run {d}/nope.yaml", ["nope.yaml"]),
    # ------------------------------------------------------------------ ensemble
    ("ensemble-create-text-member", ("ensemble create --models {d}/text.keras {d}/mean.keras "
     "--output {d}/out/e.yaml"), ["text.keras"]),
    ("ensemble-create-lambda-member", ("ensemble create --models {d}/lambda.keras {d}/mean.keras "
     "--output {d}/out/e.yaml"), ["lambda.keras", "Lambda"]),
    ("ensemble-create-not-yaml", "ensemble create --models {d}/mean.keras --output {d}/out/e.txt",
     ["e.txt", ".yaml"]),
    ("ensemble-create-weight-count", ("ensemble create --models {d}/mean.keras {d}/affs.keras "
     "--weights 1 --output {d}/out/e.yaml"), ["weight"]),
    ("ensemble-create-negative-weight", ("ensemble create --models {d}/mean.keras --weights -1 "
     "--output {d}/out/e.yaml"), ["weight"]),
    ("ensemble-create-mixed-members", ("ensemble create --models {d}/mean.keras {d}/affs.keras "
     "--output {d}/out/e.yaml"), ["mean.keras", "affs.keras", "cannot be averaged"]),
    ("ensemble-create-non-keras", ("ensemble create --models {d}/regular.txt "
     "--output {d}/out/e.yaml"), ["regular.txt"]),
    ("ensemble-fit-without-recipe", ("ensemble create --models {d}/mean.keras --fit-weights "
     "--output {d}/out/e.yaml"), ["--recipe"]),
    ("ensemble-predict-lambda-member", ("ensemble predict --models {d}/lambda.keras {d}/mean.keras "
     "--input {d}/raw.h5:volumes/raw --output {d}/out/p.h5:p"), ["lambda.keras"]),
    ("ensemble-predict-missing-file", ("ensemble predict --ensemble {d}/nope.yaml "
     "--input {d}/raw.h5:volumes/raw --output {d}/out/p.h5:p"), ["nope.yaml"]),
    ("ensemble-train-zero-members", "ensemble train isbi_n4 --members 0 --output {d}/out/ens",
     ["--members"]),
    # ------------------------------------------------------------------ tune
    ("tune-watershed-text-model", "tune watershed {d}/text.keras", ["text.keras"]),
    ("tune-watershed-text-model-with-recipe", ("tune watershed {d}/text.keras --recipe isbi_n4 "
     "--storage sqlite:///{d}/out/optuna.db --output {d}/out/tuning"), ["text.keras"]),
    ("tune-watershed-missing-run", "tune watershed {d}/no_such_run", ["no_such_run"]),
    ("tune-watershed-zero-trials", "tune watershed {d}/mean.keras --recipe isbi_n4 --n-trials 0",
     ["--n-trials"]),
    ("tune-recipe-missing-space", ("tune recipe isbi_n4 --space {d}/nope.yaml --n-trials 1 "
     "--storage sqlite:///{d}/out/optuna.db"), ["nope.yaml"]),
    ("tune-recipe-bad-space", ("tune recipe isbi_n4 --space {d}/space_bad.yaml --n-trials 1 "
     "--storage sqlite:///{d}/out/optuna.db"), ["bogus"]),
    # ------------------------------------------------------------------ align
    ("align-run-missing-input", "align run {d}/nope.h5:raw --output {d}/out/a.h5:raw", ["nope.h5"]),
    ("align-run-2d-input", "align run {d}/image.tif --output {d}/out/a.h5:raw", ["image.tif"]),
    ("align-run-learned-without-model", ("align run {d}/raw.h5:volumes/raw --output "
     "{d}/out/a.h5:raw --method learned"), ["--model"]),
    ("align-apply-missing-transforms", ("align apply {d}/raw.h5:volumes/raw --transforms "
     "{d}/nope.h5 --output {d}/out/a.h5:raw"), ["nope.h5"]),
    ("align-apply-bad-transforms", ("align apply {d}/raw.h5:volumes/raw --transforms "
     "{d}/transforms_bad.h5 --output {d}/out/a.h5:raw"), ["transforms_bad.h5"]),
    ("align-misalign-bad-sections", ("align misalign {d}/raw.h5:volumes/raw --output "
     "{d}/out/m.h5:raw --transforms {d}/out/t.h5 --sections 4:2"), ["--sections"]),
    ("align-score-not-transforms", "align score {d}/transforms_bad.h5 --truth {d}/nope.h5",
     ["transforms_bad.h5", "(z, y, x)"]),
    ("align-score-missing-input", "align score {d}/nope.npz", ["nope.npz"]),
    ("align-train-segmentation-recipe", "align train isbi_n4 --output {d}/out/run", ["isbi_n4"]),
    # ------------------------------------------------------------------ ui
    ("ui-port-zero", "ui --port 0", ["--port"]),
    ("ui-port-too-large", "ui --port 70000", ["--port"]),
    ("ui-port-text", "ui --port web", ["--port"]),
    # ------------------------------------------------------------------ view
    ("view-nothing", "view", ["no volumes"]),
    ("view-missing-file", "view {d}/nope.h5:raw", ["nope.h5"]),
    ("view-missing-key", "view {d}/raw.h5:volumes/nope", ["volumes/nope", "volumes/raw"]),
    ("view-bad-spec", "view {d}/raw.xyz", ["raw.xyz", "format"]),
    ("view-2d", "view {d}/image.tif", ["image.tif", "(1, y, x)"]),
    ("view-channels-last", "view {d}/raw4d.npy {d}/affs_last.npy", ["affs_last.npy", "channels first"]),
    ("view-4d-one-channel", "view {d}/one_channel.npy", ["one_channel.npy", "2 or more"]),
    ("view-4d-integers", "view {d}/labels4d.npy", ["labels4d.npy", "int32", "uint8"]),
    ("view-segmentation-4d", "view --segmentation {d}/affs.npy", ["affs.npy", "3D (z, y, x)"]),
    ("view-segmentation-floats", "view --segmentation {d}/bmap.npy", ["bmap.npy", "integer"]),
    ("view-affinities-3d", "view --affinities {d}/seg.npy", ["seg.npy", "(c, z, y, x)"]),
    ("view-port-too-large", "view {d}/seg.npy --port 70000", ["--port", "70000"]),
    ("view-port-text", "view {d}/seg.npy --port web", ["--port"]),
]


def test_the_suite_covers_every_subcommand_with_at_least_80_cases():
    from emkit.cli.main import COMMANDS

    assert len(CASES) >= 80 and len({c[0] for c in CASES}) == len(CASES)
    assert {c[1].split()[0] for c in CASES} == set(COMMANDS)


@pytest.mark.parametrize("name, argv, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line(name, argv, words, folder, capfd, monkeypatch):
    monkeypatch.chdir(folder)
    monkeypatch.setenv("EMKIT_DATA", str(folder / "no_data_root"))
    before = snapshot(folder)
    args = [a.replace("{d}", str(folder)) for a in argv.split()]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capfd.readouterr()
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("emkit: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word.replace("{d}", str(folder)) in lines[0], (word, lines[0])
    assert snapshot(folder) == before
