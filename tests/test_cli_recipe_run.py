"""``emkit recipe run`` and ``emkit align train`` end to end through the command line:
a segmentation recipe ends with its summary, an align recipe with the aligner's."""

from test_pipeline import tiny_overrides

from emkit.cli.main import main

ALIGN_TINY = ["data.crop=32", "model.filters=2", "model.depth=2", "train.batch_size=2",
              "train.steps_per_epoch=2", "train.log_every=1", "train.checkpoint_every=1",
              "train.validate_every=2", "train.validation_pairs=2", "train.max_steps=2"]


def test_recipe_run_ends_with_the_summary(shared_data, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    args = ["recipe", "run", "isbi_n4", "--output", str(tmp_path / "run"), "--tracking-uri", uri,
            "--set", *tiny_overrides("isbi_n4", shared_data)]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("result       isbi_n4: Rand full ")
    assert any(line.startswith("model        ") and "model.keras" in line for line in lines)
    (view,) = [line.split()[1:] for line in lines if line.startswith("view         ")]
    volumes = tmp_path / "run" / "outputs" / "validation.h5"
    assert view == ["emkit", "view", *(f"{volumes}:{key}" for key in ("raw", "pred", "seg"))]
    from emkit.view import plan_layers

    shown = plan_layers([(None, spec) for spec in view[2:]])
    assert [layer.kind for layer in shown] == ["image", "image", "segmentation"]
    assert shown[0].volume.shape == shown[2].volume.shape
    assert (tmp_path / "run" / "model.keras").is_file()
    assert main(args) == 2  # a finished run is not replaced without --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_align_recipes_run_from_recipe_run_and_align_train(shared_data, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    common = ["--tracking-uri", uri, "--set", f"data.root={shared_data}", *ALIGN_TINY]
    assert main(["recipe", "run", "align_learned_affine", "--output", str(tmp_path / "a"),
                 *common]) == 0
    out = capsys.readouterr().out
    assert "recipe      align_learned_affine" in out and "coord_error_px" in out
    assert (tmp_path / "a" / "model.keras").is_file()
    assert main(["align", "train", "align_learned_affine", "--output", str(tmp_path / "b"),
                 *common]) == 0
    assert "recipe      align_learned_affine" in capsys.readouterr().out
    assert main(["align", "train", "isbi_n4", "--output", str(tmp_path / "c")]) == 2
    assert "segmentation recipe" in capsys.readouterr().err
