"""Recipe search: each trial is a 2-step run of a tiny N4 on a 96x96 crop, tracked as a
nested MLflow run; studies are shared between processes, prune, and resume after a kill."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from emkit.errors import InputError
from emkit.recipes import load_recipe
from emkit.recipes.search import search_recipe
from emkit.recipes.space import params_to_overrides, parse_space, read_space
from emkit.tracking import PARENT_TAG, metric_history, run_info

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
LR_SPACE = {"train.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True}}


def tiny(shared_data, *extra):
    """Overrides that make isbi_n4 train 2 steps of batch 1 and validate one 96x96 section."""
    return [
        "train.max_steps=2", "train.steps_per_epoch=2", "train.log_every=1",
        "train.validate_every=1", "train.checkpoint_every=1", "train.histogram_every=0",
        "train.visualize_every=0", "sampler.batch_size=1", "sampler.workers=1",
        "model.overrides.width_factor=0.0417", f"data.root={shared_data}", "data.crop=[96,96]",
        "evaluation.max_sections=1", "export.formats=[]", "postprocess.tune=false", *extra,
    ]


def write_space(tmp_path, space, name="space.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(space))
    return path


def stores(tmp_path):
    return f"sqlite:///{tmp_path}/mlruns/mlflow.db", f"sqlite:///{tmp_path}/optuna.db"


def load(name, storage):
    return optuna.load_study(study_name=name, storage=storage)


def test_a_study_runs_trials_as_child_runs_of_one_parent(shared_data, tmp_path):
    uri, storage = stores(tmp_path)
    kwargs = {"n_trials": 3, "overrides": tiny(shared_data), "study_name": "lr",
              "storage": storage, "tracking_uri": uri, "output_root": str(tmp_path / "runs"),
              "progress": False}
    result = search_recipe("isbi_n4", write_space(tmp_path, LR_SPACE), **kwargs)

    study = load("lr", storage)
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert (result.n_complete, result.n_pruned) == (3, 0)
    assert study.user_attrs["mlflow_parent_run_id"] == result.parent_run_id
    assert result.best_value == max(t.value for t in trials)  # isbi_n4: train.best_metric v_rand
    children = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_run(result.parent_run_id).info.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{result.parent_run_id}'")
    assert sorted(r.info.run_id for r in children) == sorted(t.user_attrs["run_id"] for t in trials)
    for t in trials:
        info = run_info(uri, t.user_attrs["run_id"])
        assert info["status"] == "FINISHED"
        assert info["tags"]["emkit.study"] == "lr" and info["tags"]["emkit.trial"] == str(t.number)
        assert info["params"]["train.learning_rate"] == str(t.params["train.learning_rate"])
        assert info["metrics"]["val_v_rand"] == t.value  # the final validation's score
        assert t.user_attrs["output_dir"] == str(tmp_path / "runs" / "tune-lr" / f"trial-{t.number}")
        assert t.user_attrs["pid"] == os.getpid()

    best = study.best_trial
    assert result.best_params == best.params
    assert len(result.best_overrides) == 1
    assert load_recipe("isbi_n4", result.best_overrides).train.learning_rate == \
        best.params["train.learning_rate"]

    parent = run_info(uri, result.parent_run_id)
    assert parent["status"] == "FINISHED" and PARENT_TAG not in parent["tags"]
    assert parent["metrics"]["best_v_rand"] == result.best_value
    assert parent["metrics"]["n_complete"] == 3 and parent["metrics"]["n_pruned"] == 0
    assert parent["tags"]["emkit.best_overrides"] == " ".join(result.best_overrides)
    names = {a.path for a in MlflowClient(uri).list_artifacts(result.parent_run_id, "study")}
    assert {"study/optimization_history.png", "study/param_importances.png",
            "study/trials.csv"} <= names
    assert sorted(p.name for p in result.plots) == ["optimization_history.png",
                                                    "param_importances.png"]

    again = search_recipe("isbi_n4", tmp_path / "space.yaml", **kwargs)  # already done
    assert len(load("lr", storage).trials) == 3 and again.best_value == result.best_value
    assert again.parent_run_id == result.parent_run_id


def _spawn(tmp_path, tag, **kwargs):
    """A Python process that waits for its sibling (both import TensorFlow first), then searches."""
    code = textwrap.dedent(f"""
        import pathlib, sys, time
        import keras, emkit.recipes.run
        from emkit.recipes.search import search_recipe
        gate = pathlib.Path({str(tmp_path / 'gate')!r})
        gate.mkdir(exist_ok=True)
        (gate / {tag!r}).touch()
        while len(list(gate.iterdir())) < {kwargs.pop('wait_for', 1)}:
            time.sleep(0.05)
        search_recipe(**{kwargs!r})
    """)
    return subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_processes_share_one_study(shared_data, tmp_path):
    uri, storage = stores(tmp_path)
    kwargs = {"recipe": "isbi_n4", "space": str(write_space(tmp_path, LR_SPACE)), "n_trials": 3,
              "overrides": tiny(shared_data), "study_name": "shared", "storage": storage,
              "tracking_uri": uri, "output_root": str(tmp_path / "runs"), "wait_for": 2}
    procs = [_spawn(tmp_path, f"p{i}", **kwargs) for i in range(2)]
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]

    study = load("shared", storage)
    trials = study.get_trials()
    # each process stops after its own trial once the study has 3; the other may be mid-trial
    assert 3 <= len(trials) <= 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert {t.user_attrs["pid"] for t in trials} == {p.pid for p in procs}
    parent = study.user_attrs["mlflow_parent_run_id"]
    client = MlflowClient(uri)
    parents = client.search_runs([client.get_run(parent).info.experiment_id],
                                 filter_string="tags.`emkit.role` = 'study'")
    assert [r.info.run_id for r in parents] == [parent]  # one parent, even if both made one
    for t in trials:
        info = run_info(uri, t.user_attrs["run_id"])
        assert info["status"] == "FINISHED" and info["tags"][PARENT_TAG] == parent
    assert len({t.user_attrs["output_dir"] for t in trials}) == len(trials)
    assert run_info(uri, parent)["status"] == "FINISHED"


def test_a_clearly_worse_trial_is_pruned_and_its_run_killed(shared_data, tmp_path):
    from emkit.training import read_state
    from emkit.tune.study import open_study

    uri, storage = stores(tmp_path)
    # pixel error at threshold 1.0 (nothing called boundary) and at 0.0 (everything):
    # the two add up to 1, and the second, mostly interior, is far worse.
    space = write_space(tmp_path, {"evaluation.threshold": {"type": "categorical",
                                                            "choices": [1.0, 0.0]}})
    study = open_study("prune", storage=storage, direction="minimize")
    study.enqueue_trial({"evaluation.threshold": 1.0})
    study.enqueue_trial({"evaluation.threshold": 0.0})
    result = search_recipe(
        "isbi_n4", space, n_trials=2, overrides=tiny(shared_data), study_name="prune",
        storage=storage, metric="pixel_error", tracking_uri=uri,
        output_root=str(tmp_path / "runs"), progress=False,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))

    good, bad = load("prune", storage).get_trials()
    assert good.state == optuna.trial.TrialState.COMPLETE
    assert bad.state == optuna.trial.TrialState.PRUNED
    assert sorted(good.intermediate_values) == [1, 2] and list(bad.intermediate_values) == [1]
    assert bad.intermediate_values[1] + good.intermediate_values[1] == pytest.approx(1, abs=1e-6)
    assert bad.intermediate_values[1] > 0.5 > good.intermediate_values[1]
    info = run_info(uri, bad.user_attrs["run_id"])
    assert info["status"] == "KILLED" and info["tags"][PARENT_TAG] == result.parent_run_id
    state = read_state(tmp_path / "runs" / "tune-prune" / "trial-1" / "checkpoints")
    # pruned by the validation of step 1, which runs before that step's checkpoint
    assert state.step == 0 and not state.finished
    assert (result.n_complete, result.n_pruned) == (1, 1)
    assert result.best_value == good.value and result.best_overrides == ["evaluation.threshold=1.0"]
    assert run_info(uri, result.parent_run_id)["metrics"]["n_pruned"] == 1


def test_a_killed_study_resumes_the_dead_trial_in_its_folder(shared_data, tmp_path):
    from emkit.training import read_state

    uri, storage = stores(tmp_path)
    space = write_space(tmp_path, LR_SPACE)
    kwargs = {"recipe": "isbi_n4", "space": str(space), "n_trials": 1, "study_name": "killed",
              "overrides": tiny(shared_data, "train.max_steps=4", "train.validate_every=2"),
              "storage": storage, "tracking_uri": uri, "output_root": str(tmp_path / "runs"),
              "heartbeat": 1, "grace": 2, "progress": False}
    folder = tmp_path / "runs" / "tune-killed" / "trial-0"
    proc = _spawn(tmp_path, "only", **kwargs)
    deadline = time.monotonic() + 300
    def saved_step():  # the checkpoint is written before state.json names its step
        state = read_state(folder / "checkpoints") if (folder / "checkpoints").exists() else None
        return 0 if state is None else state.step

    while not (folder / "checkpoints" / "last.keras").exists() or saved_step() < 1:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    dead = load("killed", storage).get_trials()
    assert [t.state for t in dead] == [optuna.trial.TrialState.RUNNING]
    killed_at = read_state(folder / "checkpoints").step
    assert 1 <= killed_at < 4
    time.sleep(3.5)  # the dead trial's heartbeat is now older than the grace period

    kwargs.pop("recipe"), kwargs.pop("space")
    result = search_recipe("isbi_n4", space, **kwargs)
    first, retry = load("killed", storage).get_trials()
    assert first.state == optuna.trial.TrialState.FAIL
    assert retry.state == optuna.trial.TrialState.COMPLETE
    assert retry.system_attrs["failed_trial"] == 0 and retry.params == first.params
    assert first.user_attrs["pid"] == proc.pid and retry.user_attrs["pid"] == os.getpid()
    assert retry.user_attrs["output_dir"] == first.user_attrs["output_dir"] == str(folder)
    assert retry.user_attrs["run_id"] == first.user_attrs["run_id"]  # the same MLflow run
    state = read_state(folder / "checkpoints")
    assert state.finished and state.step == 4 and state.run_id == retry.user_attrs["run_id"]
    assert (folder / f"recipe-resume-{killed_at}.yaml").exists()  # resumed, not restarted
    info = run_info(uri, state.run_id)
    assert info["status"] == "FINISHED" and info["tags"][PARENT_TAG] == result.parent_run_id
    assert {s for s, _ in metric_history(uri, state.run_id, "train_loss")} == {1, 2, 3, 4}
    assert (result.n_complete, result.best_value) == (1, retry.value)
    assert run_info(uri, result.parent_run_id)["status"] == "FINISHED"


@pytest.mark.parametrize("spec, match", [
    ({"train.learning_rate": {"type": "uniform", "low": 0.1, "high": 1}}, "type 'uniform'"),
    ({"train.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-3}}, "low must be less"),
    ({"train.learning_rate": {"type": "float", "low": 0, "high": 1, "log": True}}, "low > 0"),
    ({"train.learning_rate": {"type": "float", "low": 0.1, "high": 1, "lo": 2}}, "unknown 'lo'"),
    ({"train.optimizer": {"type": "categorical", "choices": []}}, "non-empty"),
    ({"sampler.batch_size": {"type": "int", "low": 1.5, "high": 4}}, "expected an integer"),
    ({"train.learning_rate": 0.1}, "expected a mapping"),
])
def test_bad_space_files_name_the_file_and_key(tmp_path, spec, match):
    path = write_space(tmp_path, spec, "bad.yaml")
    with pytest.raises(InputError, match=match) as info:
        read_space(path)
    assert "bad.yaml" in str(info.value) and repr(next(iter(spec))) in str(info.value)


@pytest.mark.parametrize("key", ["train.learnig_rate", "model.overrides.widht_factor",
                                 "postprocess.options.seed_treshold"])
def test_a_key_the_recipe_lacks_is_refused_before_the_study(shared_data, tmp_path, key):
    path = write_space(tmp_path, {key: {"type": "float", "low": 0.1, "high": 0.5}}, "typo.yaml")
    uri, storage = stores(tmp_path)
    with pytest.raises(InputError, match=f"typo.yaml.*{key}"):
        search_recipe("isbi_n4", path, n_trials=1, overrides=tiny(shared_data), storage=storage,
                      tracking_uri=uri, output_root=str(tmp_path / "runs"))
    assert not (tmp_path / "optuna.db").exists()


def test_overrides_survive_the_yaml_of_apply_overrides():
    space = parse_space({
        "train.learning_rate": {"type": "float", "low": 1e-6, "high": 1, "log": True},
        "sampler.batch_size": {"type": "int", "low": 4, "high": 16, "step": 4},
        "train.optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
        "sampler.augment": {"type": "categorical",
                            "choices": [[{"name": "flip"}], [{"name": "elastic", "p": 0.5}]]},
    }, source="s.yaml")
    params = {"train.learning_rate": 1e-05, "sampler.batch_size": 8, "train.optimizer": "sgd",
              "sampler.augment": "[{name: elastic, p: 0.5}]"}
    overrides = params_to_overrides(params, space)
    assert overrides == ["train.learning_rate=1.0e-05", "sampler.batch_size=8",
                         "train.optimizer=sgd", "sampler.augment=[{name: elastic, p: 0.5}]"]
    recipe = load_recipe("isbi_n4", overrides)
    assert recipe.train.learning_rate == 1e-05 and isinstance(recipe.train.learning_rate, float)
    assert recipe.sampler.batch_size == 8 and recipe.train.optimizer == "sgd"
    assert recipe.sampler.augment == [{"name": "elastic", "p": 0.5}]


def test_the_shipped_space_fits_its_recipe():
    from emkit.recipes import RECIPES_DIR
    from emkit.recipes.space import check_space

    path = RECIPES_DIR / "spaces" / "isbi_n4.yaml"
    space = read_space(path)
    assert [p.key for p in space] == ["train.learning_rate", "sampler.batch_size",
                                      "sampler.augment", "postprocess.options.seed_threshold"]
    check_space(space, "isbi_n4", source=str(path))


def test_trial_n_draws_the_same_point_in_any_process_and_others_differ(tmp_path):
    from emkit.recipes.search import TrialSeededSampler

    def draw(study):
        trial = study.ask()
        return trial.number, trial.suggest_float("x", 0, 1)

    url = f"sqlite:///{tmp_path}/s.db"
    one = optuna.create_study(study_name="a", storage=url, sampler=TrialSeededSampler(0))
    two = optuna.load_study(study_name="a", storage=url, sampler=TrialSeededSampler(0))
    shared = [draw(one), draw(two), draw(one)]  # two "processes", one seed, one study
    alone = optuna.create_study(sampler=TrialSeededSampler(0))
    assert [n for n, _ in shared] == [0, 1, 2]
    assert [draw(alone) for _ in range(3)] == shared
    assert len({x for _, x in shared}) == 3


def test_an_interrupted_trial_is_queued_again_with_its_params():
    from emkit.recipes.search import _requeue

    study = optuna.create_study()
    trial = study.ask()
    trial.suggest_float("train.learning_rate", 1e-5, 1e-3, log=True)
    trial.set_user_attr("run_id", "abc")
    _requeue(study, trial.number, trial.number)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    retry = study.ask()
    frozen = study.get_trials()[retry.number]
    assert retry.number == 1 and frozen.params == study.trials[0].params
    assert frozen.system_attrs == {"failed_trial": 0, "retry_history": [0]}
    assert frozen.user_attrs["run_id"] == "abc"
