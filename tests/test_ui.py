"""``emkit ui``: the URL comes once the server answers, and SIGTERM leaves no process behind."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid) -> list[str] | None:
    """Fields 3 onwards of /proc/PID/stat (state, ppid, pgrp, session, ...), or None."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None


def _session(sid: int) -> list[int]:
    """The live (not zombie) processes of session ``sid``."""
    found = []
    for entry in Path("/proc").iterdir():
        fields = _stat(entry.name) if entry.name.isdigit() else None
        if fields and int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _children(pid: int) -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir()
            if e.name.isdigit() and (f := _stat(e.name)) and int(f[1]) == pid]


def test_ui_prints_the_runs_page_once_answering_and_sigterm_stops_every_child(tmp_path):
    from emkit.tracking import MlflowTracker

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    tracker = MlflowTracker(uri)
    tracker.start(experiment="emkit", run_name="a-run")
    tracker.finish()
    experiment = tracker.client.get_experiment_by_name("emkit")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ui = subprocess.Popen([sys.executable, "-m", "emkit.cli.main", "ui", "--port", str(port),
                           "--tracking-uri", uri], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = ui.stdout.readline()  # blocks until the URL is printed
        assert line.startswith("MLflow UI: "), (line, ui.stderr.read() if ui.poll() else "")
        url = line.split()[2]
        assert url == (f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}"
                       "/runs?workflowType=machine_learning")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            assert response.status == 200  # it answers when the URL is printed
        (server,) = _children(ui.pid)  # the MLflow server leads a session of its own
        assert len(_session(server)) >= 2  # with the processes it started
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=60)
    deadline = time.monotonic() + 20
    while _session(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _session(server) == []
    assert ui.stderr.read().strip().splitlines()[-1] == "emkit: interrupted"
