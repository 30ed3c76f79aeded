"""Preprocessing, and `emkit predict` applying the method its model was trained with."""

import doctest

import numpy as np
import pytest
import tifffile

import emkit.preprocess
from emkit.cli.main import main
from emkit.errors import InputError
from emkit.preprocess import preprocess


def test_docstring_examples():
    result = doctest.testmod(emkit.preprocess)
    assert result.attempted > 0 and result.failed == 0


def test_standardize_is_per_section():
    raw = np.stack([np.full((4, 4), 10, np.uint8), np.full((4, 4), 200, np.uint8)])
    raw[:, 0, 0] += 20
    out = preprocess(raw, method="standardize")
    # both sections have the same shape of intensities, so the same result
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)
    assert preprocess(raw, method="none") is raw
    with pytest.raises(InputError, match="allowed: none, standardize, whiten"):
        preprocess(raw, method="zscore")


def _identity_model(path):
    import keras

    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones")(inputs)
    keras.Model(inputs, outputs).save(path)


@pytest.mark.parametrize("with_recipe", [True, False])
def test_predict_applies_the_recipe_preprocessing(tmp_path, with_recipe):
    run = tmp_path / "run"
    run.mkdir()
    _identity_model(run / "model.keras")
    if with_recipe:
        (run / "recipe.yaml").write_text("preprocess: {method: standardize, clip_sigma: 2.0}\n")
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (2, 16, 16), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "raw.tif", raw, photometric="minisblack")
    code = main([
        "predict", "--model", str(run / "model.keras"), "--input", str(tmp_path / "raw.tif"),
        "--output", str(tmp_path / "pred.npy"), "--quiet",
    ])
    assert code == 0
    pred = np.load(tmp_path / "pred.npy")
    expected = (
        preprocess(raw, method="standardize", clip_sigma=2.0) if with_recipe else raw / 255.0
    )
    np.testing.assert_allclose(pred, expected, atol=1e-5)
