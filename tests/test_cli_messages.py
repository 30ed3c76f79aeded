"""Bad input on the command line: exit status 2 and one line on stderr that names the input."""

import numpy as np
import pytest
import tifffile

from emkit.cli.main import main


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert err.startswith("emkit: error: ") and "\n" not in err and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def test_evaluate_refuses_a_threshold_outside_0_1(tmp_path, capsys):
    labels = np.arange(16, dtype=np.uint32).reshape(4, 4)
    tifffile.imwrite(tmp_path / "a.tif", labels)
    assert main(["evaluate", str(tmp_path / "a.tif"), str(tmp_path / "a.tif"),
                 "--threshold", "-1"]) == 2
    _one_line_error(capsys, "--threshold", "[0, 1]", "-1")


def test_augment_preview_refuses_zero_samples(tmp_path, capsys):
    assert main(["augment", "preview", "--dataset", "isbi2012", "--model", "n4",
                 "--samples", "0", "--out", str(tmp_path / "grid.png")]) == 2
    _one_line_error(capsys, "--samples", "0")
    assert not (tmp_path / "grid.png").exists()


def test_a_negative_halo_is_named_as_the_halo(tmp_path, capsys):
    assert main(["segment", str(tmp_path / "pred.zarr:affs"), "--output",
                 str(tmp_path / "seg.zarr:seg"), "--blockwise", "--halo", "-4"]) == 2
    _one_line_error(capsys, "--halo", "ints >= 0", "-4")


def test_recipe_yaml_errors_are_one_line_with_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  max_steps: [1, 2\n")
    assert main(["recipe", "show", str(bad)]) == 2
    _one_line_error(capsys, str(bad), "line 3, column 1")


def test_set_takes_several_pairs(capsys):
    assert main(["recipe", "show", "isbi_n4", "--set", "train.max_steps=7",
                 "sampler.batch_size=3", "--set", "train.log_every=5"]) == 0
    out = capsys.readouterr().out
    assert "max_steps: 7" in out and "batch_size: 3" in out and "log_every: 5" in out


@pytest.mark.parametrize("value", ["x", "1,2"])
def test_override_yaml_errors_are_one_line(value, capsys):
    assert main(["recipe", "show", "isbi_n4", "--set", f"train.max_steps=[{value}"]) == 2
    _one_line_error(capsys, "train.max_steps", "line 1")


def test_stderr_holds_only_emkit_words_unless_verbose(tmp_path):
    """In a fresh process TensorFlow prints start-up lines (oneDNN, absl) from C++ before
    its log level applies; emkit keeps them off stderr, and --verbose lets them through."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "text.keras").write_text("not a model")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = ["predict", "--model", str(tmp_path / "text.keras"), "--input",
            "emkit:isbi2012/train-volume", "--output", str(tmp_path / "p.h5:p")]
    quiet = subprocess.run([sys.executable, "-m", "emkit.cli.main", *args], env=env,
                           capture_output=True, text=True, check=False)
    assert quiet.returncode == 2
    assert quiet.stderr.splitlines() == [
        (f"emkit: error: '{tmp_path / 'text.keras'}' is not a Keras model file that emkit can "
        "load: a .keras file is a zip archive, and this one is not")]
    verbose = subprocess.run([sys.executable, "-m", "emkit.cli.main", "--verbose", *args],
                             env=env, capture_output=True, text=True, check=False)
    assert verbose.returncode == 2 and verbose.stderr.splitlines()[-1] == quiet.stderr.strip()


def test_sigterm_acts_as_ctrl_c_while_a_command_runs():
    import os
    import signal

    from emkit.cli.main import _sigterm_interrupts

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), _sigterm_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0.5)  # let the handler run
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_output_folder_that_cannot_be_written_is_named(tmp_path, capsys, monkeypatch):
    import emkit.io._common as common

    np.save(tmp_path / "bmap.npy", np.full((1, 8, 8), 0.5, np.float32))
    (tmp_path / "locked").mkdir()
    monkeypatch.setattr(common.os, "access", lambda path, mode: False)  # as for a non-root user
    assert main(["segment", str(tmp_path / "bmap.npy"), "--output",
                 str(tmp_path / "locked" / "seg.h5:seg")]) == 2
    _one_line_error(capsys, str(tmp_path / "locked" / "seg.h5"), "is not writable")
    assert list((tmp_path / "locked").iterdir()) == []


def test_a_rerun_removes_the_temporaries_of_dead_processes_only(tmp_path):
    import os
    import subprocess
    import sys

    import h5py

    from emkit.io import write_volume
    from emkit.io._common import temp_name

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".seg.emkit-tmp-{dead}-0a0b0c0d.tif"
    live = tmp_path / temp_name("seg", ".tif")  # this process: still writing
    other = tmp_path / f".other.emkit-tmp-{dead}-0a0b0c0d.tif"  # another target's
    for path in (stale, live, other):
        path.write_bytes(b"partial")
    write_volume(tmp_path / "seg.tif", np.ones((2, 4, 4), np.uint8))
    assert not stale.exists() and live.exists() and other.exists()

    with h5py.File(tmp_path / "f.h5", "w") as f:
        f[f"volumes/.seg.emkit-tmp-{dead}-0a0b0c0d"] = np.zeros(2)
        f[f"volumes/.seg.emkit-tmp-{os.getpid()}-0a0b0c0d"] = np.zeros(2)
    write_volume(tmp_path / "f.h5:volumes/seg", np.ones((2, 4, 4), np.uint8))
    with h5py.File(tmp_path / "f.h5", "r") as f:
        assert sorted(f["volumes"]) == [f".seg.emkit-tmp-{os.getpid()}-0a0b0c0d", "seg"]


def test_mlflow_logs_warnings_only_unless_verbose(monkeypatch, capsys):
    import os

    monkeypatch.delenv("MLFLOW_LOGGING_LEVEL", raising=False)
    assert main(["--verbose", "recipe", "list"]) == 0
    assert "MLFLOW_LOGGING_LEVEL" not in os.environ
    assert main(["recipe", "list"]) == 0  # MLflow reads it when it is first imported
    assert os.environ["MLFLOW_LOGGING_LEVEL"] == "WARNING"
    capsys.readouterr()
