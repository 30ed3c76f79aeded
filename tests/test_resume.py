"""Kills, then reruns: the run resumes exactly, its MLflow curves read as one clean run,
and predict/segment leave no temporary behind.

Each kill is a real SIGKILL of a child process at a chosen point (a patched function
kills its own process), so nothing gets a chance to clean up; the rerun happens here.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from test_pipeline import tiny_overrides, tiny_recipe

from emkit.io import read_volume
from emkit.tracking import metric_history, run_info

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "KERAS_BACKEND": "tensorflow",
       "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}

# A tiny N4 run: 3 batches per epoch, so the checkpoint at step 4 lies inside an epoch.
RUN = ["train.max_steps=7", "train.steps_per_epoch=3", "train.checkpoint_every=2",
       "train.validate_every=4", "train.log_every=1", "train.histogram_every=0",
       "train.visualize_every=0", "postprocess.tune=false"]

# The child: loads the recipe, arms one kill, runs. ``where`` picks the kill.
CHILD = textwrap.dedent("""
    import json, os, signal, sys
    overrides, output, where = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    import keras
    from emkit.recipes import load_recipe
    from emkit.recipes.run import run_recipe
    import emkit.recipes.build as build
    import emkit.training as training

    def die(*_):
        os.kill(os.getpid(), signal.SIGKILL)

    class KillAt(keras.callbacks.Callback):
        def __init__(self, step):
            super().__init__()
            self.step = step

        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations) == self.step:
                die()

    callbacks = []
    if where.startswith("step"):
        callbacks.append(KillAt(int(where[4:])))
    elif where == "validation":
        build.ValidationPipeline.__call__ = die
    elif where == "final-save":
        save = training.save_model_atomic
        def save_then_die(model, path):
            if os.path.basename(path) == "model.keras":
                from emkit.io._common import temp_sibling
                model.save(temp_sibling(__import__("pathlib").Path(path)))  # half done
                die()
            save(model, path)
        training.save_model_atomic = save_then_die
    elif where == "prepare":
        build.prepare_data = die
    run_recipe(load_recipe("isbi_n4", overrides), output=output, callbacks=callbacks)
""")


def _killed(overrides, output, where, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    done = subprocess.run([sys.executable, str(script), json.dumps(overrides), str(output), where],
                          check=False, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


def _weights(path):
    from emkit.models.saving import load_model

    return load_model(path, compile=False).get_weights()


@pytest.fixture(scope="module")
def reference(shared_data, tmp_path_factory):
    """The uninterrupted run: its final weights and its curves."""
    from emkit.recipes.run import run_recipe

    folder = tmp_path_factory.mktemp("reference")
    uri = f"sqlite:///{folder}/mlruns/mlflow.db"
    recipe = tiny_recipe("isbi_n4", shared_data, *RUN, f"tracking.uri={uri}")
    result = run_recipe(recipe, output=folder / "run")
    return {"weights": _weights(result.model_path),
            "loss": metric_history(uri, result.run_id, "train_loss"),
            "val": metric_history(uri, result.run_id, "val_rand_error")}


def _overrides(shared_data, uri):
    """The recipe's overrides, which the child process loads too."""
    return [*tiny_overrides("isbi_n4", shared_data), *RUN, f"tracking.uri={uri}"]


@pytest.mark.parametrize("where", ["step5", "validation", "final-save"])
def test_a_killed_run_resumes_to_the_uninterrupted_weights_and_curves(
        where, reference, shared_data, tmp_path):
    from emkit.recipes import load_recipe
    from emkit.recipes.run import run_recipe
    from emkit.training import read_state

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    overrides = _overrides(shared_data, uri)
    output = tmp_path / "run"
    _killed(overrides, output, where, tmp_path)
    state = read_state(output / "checkpoints")
    assert not state.finished
    assert run_info(uri, state.run_id)["status"] == "RUNNING"  # SIGKILL: nothing ended it

    result = run_recipe(load_recipe("isbi_n4", overrides), output=output)
    assert result.resumed and result.run_id == state.run_id and result.steps == 7
    for got, want in zip(_weights(result.model_path), reference["weights"], strict=True):
        np.testing.assert_array_equal(got, want)
    loss = metric_history(uri, result.run_id, "train_loss")
    assert [s for s, _ in loss] == list(range(1, 8))  # one point per step
    np.testing.assert_allclose([v for _, v in loss], [v for _, v in reference["loss"]],
                               rtol=1e-5)
    val = metric_history(uri, result.run_id, "val_rand_error")
    assert val == reference["val"] and [s for s, _ in val] == [4, 7]
    assert run_info(uri, result.run_id)["status"] == "FINISHED"
    leftovers = [p for p in output.rglob("*") if ".emkit-tmp-" in p.name]
    assert leftovers == []


def test_a_run_killed_before_its_first_checkpoint_resumes_or_restarts_in_place(
        shared_data, tmp_path):
    from emkit.recipes import load_recipe
    from emkit.recipes.run import run_recipe
    from emkit.training import read_state

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    overrides = [*_overrides(shared_data, uri), "train.max_steps=2", "train.validate_every=0"]
    output = tmp_path / "run"
    _killed(overrides, output, "prepare", tmp_path)
    first = read_state(output / "checkpoints")
    assert first.step == 0 and not (output / "checkpoints" / "last.keras").exists()

    # The same command resumes it: same MLflow run, trained from step 0.
    result = run_recipe(load_recipe("isbi_n4", overrides), output=output)
    assert result.resumed and result.run_id == first.run_id and result.steps == 2

    # Killed again, then replaced with --overwrite: the orphaned run ends as KILLED.
    _killed([*overrides, "train.max_steps=4"], tmp_path / "run2", "prepare", tmp_path)
    orphan = read_state(tmp_path / "run2" / "checkpoints").run_id
    assert run_info(uri, orphan)["status"] == "RUNNING"
    again = run_recipe(load_recipe("isbi_n4", overrides), output=tmp_path / "run2",
                       overwrite=True)
    assert again.run_id != orphan and not again.resumed
    assert run_info(uri, orphan)["status"] == "KILLED"
    assert run_info(uri, again.run_id)["status"] == "FINISHED"


# --------------------------------------------------------------------------- predict, segment

WRITER_CHILD = textwrap.dedent("""
    import os, signal, sys
    from emkit.cli.main import main
    import emkit.io._hdf5 as h5
    import emkit.inference._writer as writer

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    original_set = writer.ChannelsLast.__setitem__
    calls = []
    def set_then_die(self, box, value):
        original_set(self, box, value)
        calls.append(1)
        if len(calls) == 1:
            die()
    writer.ChannelsLast.__setitem__ = set_then_die

    original_create = h5._create
    def create_then_die(f, key, *args):
        original_create(f, key, *args)
        f.flush()
        die()
    h5._create = create_then_die
    main(sys.argv[1:])
""")


@pytest.fixture
def volumes(tmp_path):
    from emkit.inference.testing import mean_model
    from emkit.io import write_volume

    raw = np.random.default_rng(1).integers(0, 256, (6, 40, 40), dtype=np.uint8)
    write_volume(tmp_path / "raw.h5:volumes/raw", raw, voxel_size_nm=(40, 4, 4))
    write_volume(tmp_path / "bmap.h5:volumes/boundaries",
                 np.random.default_rng(2).random((3, 32, 32)).astype(np.float32))
    write_volume(tmp_path / "out.h5:volumes/other", np.zeros(3, np.float32))  # an existing file
    mean_model(3, (4, 10, 10)).save(tmp_path / "mean.keras")
    return tmp_path


def _no_temporaries(folder):
    import h5py

    names = [p.name for p in folder.rglob("*") if ".emkit-tmp-" in p.name]
    for path in folder.glob("*.h5"):
        if ".emkit-tmp-" in path.name:
            continue
        with h5py.File(path, "r") as f:
            keys = []
            f.visit(keys.append)
            names += [f"{path.name}:{key}" for key in keys if ".emkit-tmp-" in key]
    return names


@pytest.mark.parametrize("command", ["predict-new-file", "predict-existing-file",
                                     "segment-new-file", "segment-existing-file"])
def test_predict_and_segment_killed_mid_write_leave_nothing_after_the_rerun(command, volumes):
    from emkit.cli.main import main

    tool, _, target = command.partition("-")
    output = (volumes / "new.h5:pred") if target == "new-file" else (volumes / "out.h5:pred")
    if tool == "predict":
        args = ["predict", "--model", str(volumes / "mean.keras"), "--input",
                f"{volumes}/raw.h5:volumes/raw", "--output", str(output), "--tile", "2,10,10",
                "--quiet"]
        source = volumes / "raw.h5"
    else:
        args = ["segment", f"{volumes}/bmap.h5:volumes/boundaries", "--output", str(output)]
        source = volumes / "bmap.h5"
    before = source.read_bytes()
    script = volumes / "child.py"
    script.write_text(WRITER_CHILD)
    done = subprocess.run([sys.executable, str(script), *args], check=False, env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    if target == "new-file" or tool == "segment":  # (the predictor's key in an existing
        assert _no_temporaries(volumes)  # file may not have reached the disk at the kill)
    script.unlink()

    assert main(args) == 0
    assert _no_temporaries(volumes) == []
    assert source.read_bytes() == before  # the input was only read
    assert read_volume(volumes / "out.h5:volumes/other").shape == (3,)  # the file's other data
