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
