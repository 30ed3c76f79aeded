"""``emkit tune watershed``: postprocessing studies on small synthetic volumes and a run folder."""

import json

import numpy as np
import pytest
from scipy import ndimage

from emkit.errors import InputError
from emkit.metrics import evaluate
from emkit.postprocess import noisy_affinities, segment_affinities, watershed_2d
from emkit.tune.postprocess import (
    OBJECTIVES,
    SEARCH_SPACES,
    options_override,
    tune_postprocess,
)


def voronoi_cells(sections=2, size=64, cells=12, seed=0):
    """Labels of Voronoi cells with 0 on their 1-pixel membranes, and the membrane mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((sections, size, size), np.uint32)
    for z in range(sections):
        points = rng.uniform(0, size, (cells, 2))
        distance = (yy[..., None] - points[:, 0]) ** 2 + (xx[..., None] - points[:, 1]) ** 2
        labels[z] = distance.argmin(-1) + 1 + z * cells
    membrane = np.zeros(labels.shape, bool)
    membrane[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    membrane[:, :, :-1] |= labels[:, :, :-1] != labels[:, :, 1:]
    gt = labels.copy()
    gt[membrane] = 0
    return gt, membrane


def noisy_boundaries(membrane, *, interior=0.2, noise=0.15, seed=1):
    """A boundary map whose interior (about 0.33 on average) often exceeds the default
    seed threshold 0.3: the default options split cells."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(membrane.shape).astype(np.float32),
                                    (0, 1.5, 1.5))
    field /= field.std()
    ridge = ndimage.gaussian_filter(membrane.astype(np.float32), (0, 1, 1)) * 2.5
    return np.clip(interior + ridge + noise * field, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def cells_2d():
    gt, membrane = voronoi_cells()
    return noisy_boundaries(membrane), gt


def rand_f(seg, gt):
    return evaluate(seg, gt, pred_kind="segmentation", metrics=("rand_error",))["rand_error"]


def test_search_spaces_name_real_options_and_conditions_come_after_their_option():
    import inspect

    from emkit.cli.tune import METRICS
    from emkit.postprocess import postprocess_function

    assert METRICS == tuple(OBJECTIVES)
    for method, space in SEARCH_SPACES.items():
        allowed = inspect.signature(postprocess_function(method)).parameters
        names = list(space)
        for name, spec in space.items():
            assert name in allowed, (method, name)
            if "when" in spec:
                assert names.index(spec["when"][0]) < names.index(name)
    assert options_override({"seeds": "distance", "thresholds": [0.25]}) == \
        "postprocess.options={seeds: distance, thresholds: [0.25]}"


def test_trial_options_merge_base_options_and_write_size_one_as_zero():
    import optuna

    from emkit.tune.postprocess import trial_options

    space = SEARCH_SPACES["affinity_watershed"]
    trial = optuna.trial.create_trial(
        params={"dust_size": 1, "size_threshold": 40, "scoring": "mean"},
        distributions={k: optuna.distributions.IntDistribution(1, 200, log=True)
                       for k in ("dust_size", "size_threshold")}
        | {"scoring": optuna.distributions.CategoricalDistribution(space["scoring"]["choices"])},
        value=0.1, user_attrs={"threshold": 0.35},
    )
    base = {"bins": 32, "thresholds": [0.5]}
    assert trial_options(trial, "affinity_watershed", base) == {
        "bins": 32, "thresholds": [0.35], "dust_size": 0, "size_threshold": 40, "scoring": "mean"}
    assert base == {"bins": 32, "thresholds": [0.5]}  # not changed


def test_watershed_2d_study_beats_the_default_options(cells_2d, tmp_path):
    boundaries, gt = cells_2d
    default = rand_f(watershed_2d(boundaries), gt)
    assert default < 0.96  # the defaults split cells on this map
    result = tune_postprocess(boundaries, gt, method="watershed_2d", n_trials=20,
                              study_name="ws2d", storage=f"sqlite:///{tmp_path}/optuna.db",
                              progress=False)
    assert result.metric == "rand_error" and result.direction == "maximize"
    assert result.n_complete == 20
    assert result.default_value == pytest.approx(default, abs=1e-12)  # trial 0, honestly
    assert result.best_value > default + 0.02
    # the options written back give exactly the best value
    assert rand_f(watershed_2d(boundaries, **result.best_options), gt) == \
        pytest.approx(result.best_value, abs=1e-12)
    assert result.best_options["seeds"] in ("threshold", "distance")
    assert result.override.startswith("postprocess.options={seeds: ")


def test_affinity_study_scans_thresholds_and_beats_the_defaults(tmp_path):
    blocks = np.arange(1, 49).reshape(3, 4, 4).repeat(3, 0).repeat(8, 1).repeat(8, 2)
    gt = blocks.astype(np.uint64)  # 48 boxes of 3 x 8 x 8 voxels
    affs = noisy_affinities(gt, seed=1, leaks=4) ** 0.25  # over-confident: merges at 0.5
    [seg] = segment_affinities(affs)
    default = evaluate(seg, gt, pred_kind="segmentation",
                       metrics=("adapted_rand_error",))["adapted_rand_error"]
    assert default > 0.9
    result = tune_postprocess(affs, gt, method="affinity_watershed", n_trials=10,
                              study_name="affs", storage=f"sqlite:///{tmp_path}/optuna.db",
                              progress=False)
    assert result.metric == "adapted_rand_error" and result.direction == "minimize"
    assert result.default_value == pytest.approx(default, abs=1e-12)
    assert result.best_value < default - 0.2
    [threshold] = result.best_options["thresholds"]
    trial = result.study.trials[result.best_trial]
    assert trial.user_attrs["threshold"] == threshold
    assert len(trial.user_attrs["values_by_threshold"]) == 19  # one pass, the whole grid
    [seg] = segment_affinities(affs, **result.best_options)
    assert evaluate(seg, gt, pred_kind="segmentation",
                    metrics=("adapted_rand_error",))["adapted_rand_error"] == \
        pytest.approx(result.best_value, abs=1e-12)


def test_study_persists_and_resumes_to_n_finished_trials(cells_2d, tmp_path):
    boundaries, gt = cells_2d
    storage = f"sqlite:///{tmp_path}/optuna.db"
    common = {"method": "watershed_2d", "study_name": "resume", "storage": storage,
              "progress": False}
    first = tune_postprocess(boundaries, gt, n_trials=3, **common)
    before = [t.params for t in first.study.trials]
    second = tune_postprocess(boundaries, gt, n_trials=6, **common)
    assert (first.n_complete, second.n_complete) == (3, 6)
    assert [t.params for t in second.study.trials[:3]] == before  # the first trials are kept
    assert sum(bool(t.user_attrs.get("emkit.default")) for t in second.study.trials) == 1
    third = tune_postprocess(boundaries, gt, n_trials=4, **common)  # has 6 already: runs none
    assert len(third.study.trials) == 6
    with pytest.raises(InputError, match="made for metric 'rand_error'"):
        tune_postprocess(boundaries, gt, n_trials=7, metric="adapted_rand_error", **common)
    with pytest.raises(InputError, match="made for data"):
        tune_postprocess(boundaries[:1], gt[:1], n_trials=7, **common)


def test_pareto_study_writes_a_front_of_split_and_merge(cells_2d, tmp_path):
    from emkit.tune.tables import pareto_csv

    boundaries, gt = cells_2d
    result = tune_postprocess(boundaries, gt, method="watershed_2d", n_trials=6, pareto=True,
                              study_name="front", storage=f"sqlite:///{tmp_path}/optuna.db",
                              progress=False)
    front = result.pareto_front
    assert front and len(result.study.directions) == 2
    points = [(t.values[0], t.values[1]) for t in result.study.trials]
    for row in front:  # nothing beats a front point in both scores
        assert not any(s > row["rand_split"] and m > row["rand_merge"] for s, m in points)
    best = max(t.user_attrs["rand_error"] for t in result.study.trials)
    assert result.best_value == best
    lines = pareto_csv(result).splitlines()
    assert lines[0] == "trial,rand_split,rand_merge,rand_error,override"
    assert len(lines) == len(front) + 1 and "postprocess.options={" in lines[1]


# --------------------------------------------------------------------------- the CLI


def make_run(folder, shared_data, *, uri=None, pred_shape=None, seed=0):
    """A run folder as `emkit recipe run` leaves it: recipe, prediction, state (+ MLflow run)."""
    from emkit.io import write_volume
    from emkit.recipes import dump_recipe, load_recipe
    from emkit.recipes.build import ValidationPipeline, prepare_data
    from emkit.training import TrainState, write_state

    recipe = load_recipe("isbi_n4", [f"data.root={shared_data}", "data.crop=[96,96]"])
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(dump_recipe(recipe))
    validate = ValidationPipeline(recipe, prepare_data(recipe))
    labels = validate.labels
    membrane = (labels == 0) if pred_shape is None else np.zeros(pred_shape, bool)
    pred = noisy_boundaries(membrane, interior=0.22, seed=seed)
    write_volume(f"{folder}/outputs/validation.h5:pred", pred)
    if uri is not None:
        from emkit.tracking import MlflowTracker

        tracker = MlflowTracker(uri)
        run_id = tracker.start(experiment=recipe.tracking.experiment, run_name=folder.name)
        tracker.finish("FINISHED")
        (folder / "checkpoints").mkdir()
        write_state(folder / "checkpoints",
                    TrainState(run_id=run_id, recipe=recipe.name, step=7, finished=True))
    return recipe, validate, pred


def test_cli_tunes_a_run_folder_writes_the_recipe_and_logs_to_mlflow(shared_data, tmp_path):
    from emkit.cli.main import main
    from emkit.recipes import load_recipe
    from emkit.recipes.build import ValidationPipeline
    from emkit.tracking import run_info
    from emkit.training import read_state

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    run = tmp_path / "isbi_run"
    recipe, validate, pred = make_run(run, shared_data, uri=uri)
    argv = ["tune", "watershed", str(run), "--n-trials", "8", "--tracking-uri", uri,
            "--storage", f"sqlite:///{tmp_path}/optuna.db", "--quiet"]
    assert main(argv) == 0
    folder = run / "tuning" / "watershed-isbi_run"
    summary = json.loads((folder / "tuning.json").read_text())
    assert summary["n_complete"] == 8 and summary["metric"] == "rand_error"
    tuned = load_recipe(folder / "tuned.yaml")
    assert tuned.postprocess.options == summary["best_options"]
    assert tuned.data.crop == [96, 96] and tuned.model == recipe.model
    # the values are the validation pipeline's own scores, before and after
    pred = pred[..., None]
    assert validate.evaluate(pred, validate.segment(pred))["rand_error"] == \
        pytest.approx(summary["default_value"], abs=1e-12)
    after = ValidationPipeline(tuned, validate.data)
    assert after.evaluate(pred, after.segment(pred))["rand_error"] == \
        pytest.approx(summary["best_value"], abs=1e-12)
    assert summary["best_value"] >= summary["default_value"]
    info = run_info(uri, read_state(run / "checkpoints").run_id)
    assert info["status"] == "FINISHED"
    assert info["metrics"]["tune_rand_error_best"] == pytest.approx(summary["best_value"])
    assert info["metrics"]["tune_rand_error_default"] == pytest.approx(summary["default_value"])
    assert "tune_best_seed_threshold" in info["metrics"]
    assert info["tags"]["emkit.tuned_postprocess"] == summary["override"]
    for name in ("tuned.yaml", "trials.csv", "optimization_history.png"):
        assert (folder / name).is_file(), name
    assert len((folder / "trials.csv").read_text().splitlines()) == 9


def test_cli_errors_name_the_file(shared_data, tmp_path, capsys):
    from emkit.cli.main import main

    storage = ["--storage", f"sqlite:///{tmp_path}/optuna.db", "--quiet"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["tune", "watershed", str(empty), *storage]) == 2
    assert f"'{empty}' has no recipe.yaml" in capsys.readouterr().err
    model = tmp_path / "net.keras"
    model.write_bytes(b"not read")
    assert main(["tune", "watershed", str(model), *storage]) == 2
    assert f"model '{model}' has no recipe; pass --recipe" in capsys.readouterr().err
    run = tmp_path / "small_run"
    make_run(run, shared_data, pred_shape=(5, 64, 64))
    assert main(["tune", "watershed", str(run), *storage]) == 2
    err = capsys.readouterr().err
    assert f"'{run}/outputs/validation.h5:pred' has shape (5, 64, 64)" in err
    assert "need (5, 96, 96)" in err
