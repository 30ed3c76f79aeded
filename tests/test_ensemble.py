"""Ensembles: the weighted mean of members with different fields of view, the file, fitted
weights, the EnsembleLearner with nested MLflow runs, and the CLI."""

import h5py
import keras
import numpy as np
import pytest
import yaml

from emkit.cli.main import main
from emkit.ensemble import (
    Ensemble,
    fit_weights,
    load_ensemble,
    load_predictor,
    make_ensemble,
    normalize_weights,
    predict_ensemble,
    save_ensemble,
)
from emkit.errors import InputError, MissingDataError, OverwriteError
from emkit.inference import create_output, predict_volume
from emkit.inference.testing import constant_model, mean_model
from emkit.models.architectures import build_model
from emkit.models.testing import small_spec

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def conv_net(kernels, input_shape, *, seed, channels=1, name):
    """Valid convolutions of the given kernel sizes, then a sigmoid: a random 2D net."""
    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((*input_shape, 1))
    for i, k in enumerate(kernels):
        last = i == len(kernels) - 1
        x = keras.layers.Conv2D(channels if last else 3, k, activation="sigmoid" if last else
                                "relu", bias_initializer="random_normal")(x)
    return keras.Model(inputs, x, name=name)


@pytest.fixture(scope="module")
def members():
    """Three 2D members: fields of view 3, 7 (3 + 5) and 95 (a pooled N4, run dense)."""
    keras.utils.set_random_seed(7)
    n4 = build_model(small_spec("n4"))
    return [conv_net([3], (12, 12), seed=1, name="fov3"),
            conv_net([5, 3], (20, 20), seed=2, name="fov7"), n4]


@pytest.fixture(scope="module")
def raw():
    return np.random.default_rng(0).integers(0, 256, (2, 30, 26), dtype=np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory, members):
    folder = tmp_path_factory.mktemp("ensemble")
    (folder / "m").mkdir()
    paths = []
    for model in members[:2]:
        paths.append(folder / "m" / f"{model.name}.keras")
        model.save(paths[-1])
    return folder, paths


# --------------------------------------------------------------------------- the weighted mean


def test_weighted_mean_of_members_with_different_fields_of_view(members, raw, tmp_path):
    preds = [predict_volume(m, raw, progress=False) for m in members]
    assert min(np.abs(a - b).max() for a in preds for b in preds if a is not b) > 1e-2
    expected = 0.25 * preds[0] + 0.5 * preds[1] + 0.25 * preds[2]

    got = predict_ensemble(members, raw, weights=[1, 2, 1], progress=False)
    assert got.shape == (*raw.shape, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)

    out = np.full(expected.shape, 7.0, np.float32)  # an ndarray out is zeroed first
    assert predict_ensemble(members, raw, weights=[1, 2, 1], out=out, progress=False) is out
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)

    spec = f"{tmp_path}/pred.h5:pred"
    with create_output(spec, expected.shape) as disk:  # out of core, many small blocks
        predict_ensemble(members, raw, weights=[1, 2, 1], out=disk, block_mib=0.001,
                         progress=False)
    with h5py.File(tmp_path / "pred.h5") as f:
        stored = f["pred"][...]
    np.testing.assert_allclose(stored, expected[..., 0], rtol=0, atol=1e-6)

    # Equal weights by default; a member of weight 0 does not count.
    np.testing.assert_allclose(predict_ensemble(members[:2], raw, progress=False),
                               (preds[0] + preds[1]) / 2, rtol=0, atol=1e-6)
    np.testing.assert_allclose(predict_ensemble(members, raw, weights=[0, 1, 0], progress=False),
                               preds[1], rtol=0, atol=1e-6)
    image = predict_ensemble(members[:2], raw[1], weights=[3, 1], progress=False)  # (Y, X)
    np.testing.assert_allclose(image, 0.75 * preds[0][1] + 0.25 * preds[1][1], rtol=0, atol=1e-6)


def test_predict_volume_weight_scales_what_is_added(members, raw):
    model = members[0]
    plain = predict_volume(model, raw, progress=False)
    scaled = predict_volume(model, raw, weight=0.3, progress=False)
    np.testing.assert_allclose(scaled, 0.3 * plain, rtol=0, atol=1e-7)
    with pytest.raises(InputError, match="weight"):
        predict_volume(model, raw, weight=float("nan"))


def test_members_must_match_in_channels_and_kind(members, raw):
    two = constant_model(2, (12, 12), channels=2)
    with pytest.raises(InputError, match=r"'fov3'.*'constant'.*\(None, 10, 10, 1\).*"
                                         r"\(None, 10, 10, 2\)"):
        predict_ensemble([members[0], two], raw)
    with pytest.raises(InputError, match=r"'fov3'.*'mean3d'"):
        predict_ensemble([members[0], mean_model(3, (4, 10, 10))], raw)


def test_weights_are_normalized_and_checked(files):
    folder, paths = files
    assert normalize_weights([1, 3], 2).tolist() == [0.25, 0.75]
    assert normalize_weights(None, 4).tolist() == [0.25] * 4
    ensemble = make_ensemble(paths, weights=[2, 6])
    assert ensemble.weights.tolist() == [0.25, 0.75]
    for bad, match in (([1], "one per member"), ([1, -1], ">= 0"), ([0, 0], "not all 0"),
                       ([1, float("inf")], "finite")):
        with pytest.raises(InputError, match=match):
            make_ensemble(paths, weights=bad)
    with pytest.raises(MissingDataError):
        make_ensemble([folder / "nothing.keras"])


def test_file_round_trip_is_relative_atomic_and_refuses_overwrite(files, tmp_path, monkeypatch):
    import shutil

    folder, paths = files
    ensemble = make_ensemble(paths, weights=[1, 3], metadata={"recipe": "isbi_n4"})
    path = save_ensemble(ensemble, folder / "ensemble.yaml")
    stored = yaml.safe_load(path.read_text())
    assert [m["path"] for m in stored["members"]] == ["m/fov3.keras", "m/fov7.keras"]
    loaded = load_ensemble(path)
    assert loaded.paths == [p.resolve() for p in paths] and loaded.weights.tolist() == [0.25, 0.75]
    assert loaded.metadata == {"recipe": "isbi_n4"}
    assert [m.sha256 for m in loaded.members] == [m.sha256 for m in ensemble.members]
    assert isinstance(load_predictor(path), Ensemble)
    assert load_predictor(paths[0]).name == "fov3"
    with pytest.raises(InputError, match=r"\.keras model or an ensemble"):
        load_predictor(folder / "model.h5")

    with pytest.raises(OverwriteError, match="overwrite"):
        save_ensemble(ensemble, path)
    before = path.read_text()

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(yaml, "safe_dump", fail)
    with pytest.raises(RuntimeError):
        save_ensemble(ensemble, path, overwrite=True)
    monkeypatch.undo()
    assert path.read_text() == before  # untouched, and no temporary file left behind
    assert sorted(p.name for p in folder.iterdir()) == ["ensemble.yaml", "m"]

    moved = tmp_path / "moved"  # the folder moves as a whole: paths are relative
    shutil.copytree(folder, moved)
    assert load_ensemble(moved / "ensemble.yaml").paths[0] == (moved / "m/fov3.keras").resolve()


def test_a_changed_member_is_an_error(files, tmp_path, members):
    import shutil

    folder, _ = files
    work = tmp_path / "work"
    shutil.copytree(folder / "m", work / "m")
    ensemble = make_ensemble([work / "m/fov3.keras", work / "m/fov7.keras"])
    path = save_ensemble(ensemble, work / "e.yaml")
    members[1].save(work / "m/fov3.keras")  # replaced by another model
    with pytest.raises(InputError, match=r"member 0 .*fov3.keras' changed since the ensemble"):
        load_ensemble(path)
    (work / "m/fov7.keras").unlink()
    with pytest.raises(MissingDataError, match="member 1 'm/fov7.keras' not found"):
        load_ensemble(path, verify=False)
    path.write_text("members: [{path: a.keras, weight: 1}]\n")
    with pytest.raises(InputError, match="exactly the keys path, weight and sha256"):
        load_ensemble(path)


# --------------------------------------------------------------------------- fitted weights


def test_fitted_weights_prefer_the_member_close_to_the_truth():
    rng = np.random.default_rng(0)
    truth = (rng.random((4, 16, 16, 1)) > 0.5).astype(np.float32)
    good = np.clip(truth + rng.normal(0, 0.1, truth.shape), 0.01, 0.99)
    random = rng.random(truth.shape)
    known = rng.random(truth.shape) > 0.5
    good[~known] = 1 - truth[~known]  # wrong where unlabelled: must not count
    fit = fit_weights([random, good], truth, known)
    assert fit.weights[1] > 0.9 and abs(fit.weights.sum() - 1) < 1e-12
    assert fit.voxels == known.sum() and fit.loss <= fit.uniform_loss
    assert fit.loss <= fit.member_losses.min() + 1e-9
    again = fit_weights([random, good], truth, known)
    assert again.weights.tolist() == fit.weights.tolist()  # deterministic
    ignored = fit_weights([random, good], truth)  # counting the unlabelled voxels changes it
    assert ignored.weights[1] < 0.9
    with pytest.raises(InputError, match="no known voxel"):
        fit_weights([random, good], truth, np.zeros_like(known))


def isbi_overrides(shared_data, *extra):
    return [f"data.root={shared_data}", "data.crop=[96,96]", "evaluation.max_sections=1", "postprocess.tune=false", *extra]


def test_validation_targets_are_the_sampler_targets(shared_data):
    from emkit.ensemble.weights import validation_targets
    from emkit.recipes import load_recipe
    from emkit.recipes.build import prepare_data

    recipe = load_recipe("isbi_n4", isbi_overrides(shared_data))
    data = prepare_data(recipe)
    target, known = validation_targets(recipe, data, ndim=2)
    labels = data.dataset.labels[list(data.validation_sections)]
    assert target.shape == (*labels.shape, 1) and known.all()  # ISBI: every pixel is labelled
    np.testing.assert_array_equal(target[..., 0], labels == 0)  # 0 = membrane


# --------------------------------------------------------------------------- EnsembleLearner

TINY_N4 = [
    "train.max_steps=2", "train.steps_per_epoch=2", "train.log_every=1",
    "train.validate_every=2", "train.checkpoint_every=1", "train.histogram_every=2",
    "train.visualize_every=2", "sampler.batch_size=1", "sampler.workers=1",
    "model.overrides.width_factor=0.0417",
]


def test_ensemble_train_nests_member_runs_and_resumes(shared_data, tmp_path, capsys):
    from mlflow import MlflowClient

    from emkit.ensemble import train_ensemble
    from emkit.ensemble.train import read_record
    from emkit.tracking import PARENT_TAG, run_info
    from emkit.training import read_state, write_state

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    overrides = isbi_overrides(shared_data, *TINY_N4, f"tracking.uri={uri}")
    out = tmp_path / "ens"
    result = train_ensemble("isbi_n4", members=2, overrides=overrides, output=out)
    assert result.trained == [True, True]

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("isbi2012-2d")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3
    children = [r for r in runs if r.data.tags.get(PARENT_TAG) == result.parent_run_id]
    assert sorted(r.info.run_id for r in children) == sorted(result.member_run_ids)

    parent = run_info(uri, result.parent_run_id)
    assert parent["status"] == "FINISHED" and parent["params"]["ensemble.members"] == "2"
    assert parent["params"]["run.seed"] == "0"
    for key in ("val_adapted_rand_error", "val_pixel_error", "member0_adapted_rand_error",
                "member1_adapted_rand_error"):
        assert 0 <= parent["metrics"][key] <= 1, key
    assert parent["metrics"]["val_adapted_rand_error"] == result.metrics["adapted_rand_error"]
    assert [run_info(uri, r)["params"]["run.seed"] for r in result.member_run_ids] == ["0", "1"]

    ensemble = load_ensemble(out / "ensemble.yaml")
    assert [p.relative_to(out.resolve()).as_posix() for p in ensemble.paths] == [
        "member-0/model.keras", "member-1/model.keras"]
    assert ensemble.weights.tolist() == [0.5, 0.5]
    assert (out / "outputs" / "validation.h5").is_file()
    assert read_record(out)["parent_run_id"] == result.parent_run_id

    # The same --output again: both members are finished, nothing new is trained or logged.
    code = main(["ensemble", "train", "isbi_n4", "--members", "2", "--output", str(out),
                 *[a for o in overrides for a in ("--set", o)]])
    assert code == 0
    shown = capsys.readouterr().out
    assert result.parent_run_id in shown and "already trained: 0, 1" in shown
    assert len(client.search_runs([experiment.experiment_id])) == 3
    assert main(["ensemble", "train", "isbi_n4", "--members", "3", "--output", str(out),
                 *[a for o in overrides for a in ("--set", o)]]) == 2
    assert "holds an ensemble of 2" in capsys.readouterr().err

    # Interrupted in member 1: it resumes into its own run, member 0 is skipped.
    state = read_state(out / "member-1" / "checkpoints")
    state.finished = False
    write_state(out / "member-1" / "checkpoints", state)
    record = (out / "ensemble.json").read_text().replace('"finished": true', '"finished": false')
    (out / "ensemble.json").write_text(record)
    again = train_ensemble("isbi_n4", members=2, overrides=overrides, output=out)
    assert again.trained == [False, True] and again.member_run_ids == result.member_run_ids
    assert again.parent_run_id == result.parent_run_id
    assert len(client.search_runs([experiment.experiment_id])) == 3
    assert run_info(uri, result.parent_run_id)["status"] == "FINISHED"


# --------------------------------------------------------------------------- CLI


def test_cli_predict_save_and_predict_with_the_ensemble_file(files, raw, tmp_path, capsys):
    from emkit.io import read_volume, write_volume

    _, paths = files
    write_volume(tmp_path / "raw.h5:raw", raw)
    models = [load_predictor(p) for p in paths]
    expected = predict_ensemble(models, raw, weights=[1, 3], progress=False)[..., 0]
    args = ["ensemble", "predict", "--models", *map(str, paths), "--weights", "1", "3",
            "--input", f"{tmp_path}/raw.h5:raw", "--output", f"{tmp_path}/pred.h5:pred",
            "--save", str(tmp_path / "e.yaml"), "--quiet"]
    assert main(args) == 0
    np.testing.assert_allclose(read_volume(f"{tmp_path}/pred.h5:pred"), expected, atol=1e-6)
    assert load_ensemble(tmp_path / "e.yaml").weights.tolist() == [0.25, 0.75]

    assert main(args) == 2  # the output exists
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0

    code = main(["predict", "--model", str(tmp_path / "e.yaml"), "--input",
                 f"{tmp_path}/raw.h5:raw", "--output", str(tmp_path / "again.tif")])
    assert code == 0 and "ensemble of 2" in capsys.readouterr().out
    np.testing.assert_allclose(read_volume(tmp_path / "again.tif"), expected, atol=1e-6)

    code = main(["ensemble", "predict", "--ensemble", str(tmp_path / "e.yaml"), "--weights",
                 "1", "0", "--input", f"{tmp_path}/raw.h5:raw", "--output",
                 str(tmp_path / "first.npy"), "--quiet"])
    assert code == 0
    np.testing.assert_allclose(np.load(tmp_path / "first.npy"),
                               predict_volume(models[0], raw, progress=False)[..., 0], atol=1e-6)


def test_cli_create_with_fitted_weights(files, shared_data, tmp_path, capsys):
    _, paths = files
    out = tmp_path / "fitted.yaml"
    args = ["ensemble", "create", "--models", *map(str, paths), "--fit-weights", "--recipe",
            "isbi_n4", *[a for o in isbi_overrides(shared_data) for a in ("--set", o)],
            "--output", str(out)]
    assert main(args) == 0
    assert "fitted weights on isbi_n4" in capsys.readouterr().err
    ensemble = load_ensemble(out)
    assert abs(ensemble.weights.sum() - 1) < 1e-9
    assert ensemble.metadata["weights"]["method"] == "fitted"
    assert ensemble.metadata["weights"]["loss"] <= ensemble.metadata["weights"]["uniform_loss"]
    assert main(args) == 2 and "exists" in capsys.readouterr().err
    assert main(["ensemble", "create", "--models", *map(str, paths), "--fit-weights",
                 "--output", str(tmp_path / "x.yaml")]) == 2
    assert "--fit-weights needs --recipe" in capsys.readouterr().err
