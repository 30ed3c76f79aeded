"""A recipe run in dense mode, with the postprocessing tuned inside the run on held-out folds."""

import numpy as np
import pytest
import yaml
from test_pipeline import tiny_recipe

from emkit.cli.main import main
from emkit.errors import InputError
from emkit.tracking import MemoryTracker
from emkit.tune.heldout import split_folds, tune_heldout


def test_split_folds_are_contiguous_and_need_two_sections():
    assert split_folds([0, 1, 2, 3, 4]) == [[0, 1, 2], [3, 4]]
    assert split_folds([3, 5, 9], 3) == [[3], [5], [9]]
    with pytest.raises(InputError, match="at least 2 scored validation sections"):
        split_folds([4])


def _disc_stack():
    """Four 40x40 sections, each three discs on a background, and a soft boundary map."""
    yy, xx = np.mgrid[:40, :40]
    gt = np.zeros((4, 40, 40), np.uint32)
    for z in range(4):
        for i, (cy, cx) in enumerate([(10, 10), (12, 29), (29, 20)]):
            gt[z][(yy - cy - z) ** 2 + (xx - cx) ** 2 < 64] = i + 1
    gt[gt == 0] = 9
    edge = np.zeros(gt.shape, bool)
    edge[:, 1:] |= gt[:, 1:] != gt[:, :-1]
    edge[:, :, 1:] |= gt[:, :, 1:] != gt[:, :, :-1]
    pred = np.where(edge, 0.45, 0.1).astype(np.float32)  # soft: the default seeds merge
    return pred, gt


def test_tuning_reports_scores_of_sections_its_tuner_did_not_see(monkeypatch):
    from emkit.tune import postprocess

    seen = []
    real = postprocess.tune_postprocess

    def spy(pred, gt, *, scored_sections, study_name, **kwargs):
        seen.append((study_name, list(scored_sections)))
        return real(pred, gt, scored_sections=scored_sections, study_name=study_name, **kwargs)

    monkeypatch.setattr(postprocess, "tune_postprocess", spy)
    pred, gt = _disc_stack()
    result = tune_heldout(pred, gt, method="watershed_2d", scored_sections=[0, 1, 2, 3],
                          base_options={"seed_threshold": 0.5}, n_trials=12,
                          storage="sqlite:///:memory:", progress=False)
    assert seen == [("run-fold0", [2, 3]), ("run-fold1", [0, 1]), ("run-all", [0, 1, 2, 3])]
    assert [(f.tuned_on, f.scored_on) for f in result.folds] == [([2, 3], [0, 1]),
                                                                 ([0, 1], [2, 3])]
    for fold in result.folds:
        assert not set(fold.tuned_on) & set(fold.scored_on)
        # the held-out "after" is the fold's own options re-scored on its held-out sections
        again = postprocess.score_options(pred, gt, fold.options, method="watershed_2d",
                                          scored_sections=fold.scored_on, metric="rand_error")
        assert fold.after == again
    mean = (result.folds[0].after["rand_error"] + result.folds[1].after["rand_error"]) / 2
    assert result.after["rand_error"] == pytest.approx(mean)
    # seeds at 0.5 merge the discs; tuning finds seeds below the soft boundaries
    assert result.before["rand_merge"] < 0.5 and result.after["rand_merge"] > 0.9
    assert result.after["rand_error"] > result.before["rand_error"] + 0.1
    assert not result.kept_recipe_options and result.options == result.tuned_options


def test_recipe_options_are_kept_when_tuning_does_not_pay_on_held_out_sections():
    pred, gt = _disc_stack()
    good = {"seeds": "threshold", "seed_threshold": 0.2, "min_size": 0}
    result = tune_heldout(pred, gt, method="watershed_2d", scored_sections=[0, 1, 2, 3],
                          base_options=good, n_trials=6, storage="sqlite:///:memory:",
                          progress=False)
    assert result.after["rand_error"] <= result.before["rand_error"]
    assert result.kept_recipe_options and result.options == good
    assert result.result == result.before


def test_dense_run_tunes_writes_the_options_and_segment_reads_them(shared_data, tmp_path,
                                                                  capsys):
    from emkit.io import read_volume
    from emkit.models.saving import load_model
    from emkit.recipes.run import run_recipe

    recipe = tiny_recipe("isbi_n4", shared_data, "train.mode=dense", "train.dense_output=[6, 6]",
                         "postprocess.tune_trials=4", "train.max_steps=3",
                         "train.validate_every=3", "inference.final_tta=true")
    tracker = MemoryTracker()
    result = run_recipe(recipe, output=tmp_path / "run", tracker=tracker)
    folder = result.output_dir
    # the trainer is the dense form, the saved model the patch classifier
    model = load_model(folder / "model.keras", compile=False)
    assert model.name == "n4" and model.output_shape[1:3] == (1, 1)
    assert load_model(folder / "checkpoints/last.keras", compile=False).name == "n4_dense"
    assert load_model(folder / "checkpoints/best.keras", compile=False).name == "n4"
    # the final prediction (tuned, exported) with test-time augmentation, logged apart
    assert [s for s, _ in tracker.metrics["final_tta_pixel_error"]] == [3]
    assert [s for s, _ in tracker.metrics["val_pixel_error"]] == [3]
    # tuning: logged before/after, options written back to recipe.yaml
    tuning = result.tuning
    assert tuning is not None and len(tuning.folds) == 2
    for key in ("tune_before_rand_error", "tune_after_rand_error", "tune_in_sample_rand_error"):
        assert [s for s, _ in tracker.metrics[key]] == [3]
    saved = yaml.safe_load((folder / "recipe.yaml").read_text())
    assert saved["postprocess"]["options"] == tuning.options
    assert (folder / "tuning" / "heldout.json").exists()
    assert (folder / "learning_curves.png").exists()
    # the exported segmentation uses the tuned options; emkit segment --recipe gives the same
    out = tmp_path / "seg.h5"
    assert main(["segment", f"{folder}/outputs/validation.h5:pred", "--output", f"{out}:seg",
                 "--recipe", str(folder)]) == 0
    np.testing.assert_array_equal(read_volume(f"{out}:seg"),
                                  read_volume(f"{folder}/outputs/validation.h5:seg"))
    capsys.readouterr()
    assert main(["segment", f"{folder}/outputs/validation.h5:pred", "--output", f"{out}:again",
                 "--recipe", str(tmp_path)]) == 2
    assert "no recipe.yaml" in capsys.readouterr().err


def test_the_run_summary_names_scores_before_and_after(shared_data, tmp_path):
    from emkit.cli.recipe import summary
    from emkit.recipes.run import run_recipe

    recipe = tiny_recipe("isbi_n4", shared_data, "postprocess.tune_trials=3")
    result = run_recipe(recipe, output=tmp_path / "run", tracker=MemoryTracker())
    text = summary(recipe, result, "sqlite:///mlruns/mlflow.db", 1.0)
    lines = text.splitlines()
    assert "with the recipe's options ->" in text and "held out" in text
    assert lines[-1].startswith("result       isbi_n4: Rand full ")
    kept = result.tuning.kept_recipe_options
    assert ("after tuning (held out" in lines[-1]) != kept and str(result.output_dir) in lines[-1]
    assert ("not kept" in lines[-1]) == kept
    assert any(line.startswith("browse       emkit ui") for line in lines)


def test_tuning_needs_two_labelled_validation_sections(shared_data, tmp_path):
    from emkit.recipes.run import run_recipe

    recipe = tiny_recipe("isbi_n4", shared_data, "evaluation.max_sections=1")
    with pytest.raises(InputError, match="postprocess.tune needs at least 2"):
        run_recipe(recipe, output=tmp_path / "run", tracker=MemoryTracker())
