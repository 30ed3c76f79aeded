"""Tests for ``emkit augment``: the preview grid on the bundled ISBI data, recipes, listing."""

import numpy as np
import pytest
from PIL import Image

from emkit.augment import AUGMENTATIONS
from emkit.cli.main import main


def test_preview_from_options_writes_a_grid(tmp_path):
    out = tmp_path / "grid.png"
    argv = ["augment", "preview", "--dataset", "isbi2012", "--input-shape", "40,40",
            "--output-shape", "36,36", "--augment", "flip,rot90,elastic,blur", "--samples", "2",
            "--out", str(out)]
    assert main(argv) == 0
    image = np.asarray(Image.open(out))
    # 4 columns of 128-pixel tiles (40 x 4 = 160 after enlarging), 2 rows, a header.
    assert image.shape == (16 + 2 * (160 + 4) + 4, 4 * (160 + 4) + 4, 3)
    assert main(argv) == 2  # exists: needs --force
    assert main([*argv, "--force"]) == 0


def test_preview_reads_a_recipe_and_rejects_unknown_keys(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "dataset: isbi2012\ninput_shape: [3, 24, 24]\noutput_shape: [3, 24, 24]\n"
        "target: affinities\naugment:\n  - {name: misalign, p: 1.0, max_shift: 3}\n"
        "max_defects: 1\n"
    )
    out = tmp_path / "grid.png"
    assert main(["augment", "preview", str(recipe), "--samples", "1", "--out", str(out)]) == 0
    assert out.is_file()
    recipe.write_text("dataset: isbi2012\ninput_shape: [24, 24]\nbatch: 4\n")
    assert main(["augment", "preview", str(recipe), "--out", str(tmp_path / "b.png")]) == 2
    assert "unknown key 'batch'" in capsys.readouterr().err


def test_list_names_every_augmentation(capsys):
    assert main(["augment", "list"]) == 0
    text = capsys.readouterr().out
    for name in AUGMENTATIONS:
        assert f"{name}:" in text


@pytest.mark.parametrize("argv", [["augment"], ["augment", "preview", "--help"]])
def test_help(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # --help exits
        code = exc.code
    assert code in (0, 2)
    assert "augment" in capsys.readouterr().out
