"""Tracking: the in-memory tracker, and one real MLflow SQLite store in a temp folder."""

import numpy as np

from emkit.tracking import (
    DEFAULT_URI,
    MemoryTracker,
    MlflowTracker,
    metric_history,
    run_info,
    tracking_uri,
    ui_command,
)


def test_memory_tracker():
    tracker = MemoryTracker()
    run_id = tracker.start(experiment="e", run_name="r")
    tracker.log_metrics({"a": 1}, step=3)
    tracker.log_image(np.zeros((2, 3, 3), np.uint8), key="img", step=3)
    tracker.finish()
    assert tracker.metrics == {"a": [(3, 1.0)]} and tracker.images == [("img", 3, (2, 3, 3))]
    assert tracker.status == "FINISHED" and tracker.start(experiment="e", run_name="r", run_id=run_id) == run_id


def test_tracking_uri_precedence(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri() == DEFAULT_URI == "sqlite:///mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///x.db")
    assert tracking_uri() == "sqlite:///x.db" and tracking_uri("http://h:1") == "http://h:1"


def test_mlflow_sqlite_store_resume_same_run(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    tracker = MlflowTracker(uri)
    run_id = tracker.start(experiment="test", run_name="one")
    tracker.log_params({"train.max_steps": 2, "long": "x" * 600})
    tracker.log_metrics({"train_loss": 0.7}, step=1)
    tracker.log_image(np.zeros((4, 4, 3), np.uint8), key="val_overlay", step=1)
    (tmp_path / "recipe.yaml").write_text("a: 1\n")
    tracker.log_artifact(tmp_path / "recipe.yaml")
    tracker.finish("KILLED")
    again = MlflowTracker(uri)
    assert again.start(experiment="test", run_name="one", run_id=run_id) == run_id
    again.log_metrics({"train_loss": 0.5}, step=2)
    again.finish()
    info = run_info(uri, run_id)
    assert info["status"] == "FINISHED" and info["params"]["train.max_steps"] == "2"
    assert len(info["params"]["long"]) == 500
    assert metric_history(uri, run_id, "train_loss") == [(1, 0.7), (2, 0.5)]
    assert (tmp_path / "mlruns" / "artifacts").is_dir()
    assert any(p.name == "recipe.yaml" for p in (tmp_path / "mlruns" / "artifacts").rglob("*"))


def test_ui_command_is_localhost():
    command = ui_command("sqlite:///tmp-ui/mlflow.db", port=5055)
    assert command[1:4] == ["-m", "mlflow", "ui"]
    assert "127.0.0.1" in command and "5055" in command
