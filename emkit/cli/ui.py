"""``emkit ui``: the MLflow UI on localhost, over emkit's store (default ``mlruns/``).

    emkit ui [--port 5000] [--tracking-uri URI] [--experiment NAME]

The server runs in a process group of its own (MLflow starts uvicorn and task
consumers beside it); stopping ``emkit ui`` (Ctrl-C or SIGTERM) stops the whole group.
The URL is printed once the server answers, and it opens the experiment's runs table
in MLflow's model-training view, where runs are compared.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from emkit.cli.arguments import add_command
from emkit.errors import InputError

START_TIMEOUT_S = 300


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "ui", help="start the MLflow UI on localhost",
                         description="Start the MLflow UI on 127.0.0.1 over the tracking store "
                                     "that `emkit recipe run` writes to "
                                     "(sqlite:///mlruns/mlflow.db unless --tracking-uri or "
                                     "$MLFLOW_TRACKING_URI says otherwise). Once the server "
                                     "answers, print the address of the experiment's runs table "
                                     "(MLflow's model-training view: runs, metric charts, "
                                     "comparison). Ctrl-C or SIGTERM stops the server and every "
                                     "process it started.")
    parser.add_argument("--port", type=int, default=5000, help="port (default: 5000)")
    parser.add_argument("--tracking-uri", help="the store to browse")
    parser.add_argument("--experiment", help="the experiment to open (default: the one with "
                                             "the newest run)")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="print the command instead of running it")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from emkit.tracking import runs_page, tracking_uri, ui_command

    if not 0 < args.port < 65536:
        raise InputError(f"--port: expected a port in 1-65535, got {args.port}")
    uri = tracking_uri(args.tracking_uri)
    command = ui_command(uri, port=args.port)
    if args.print_only:
        print(" ".join(command))
        return 0
    address = f"http://127.0.0.1:{args.port}"
    if _answers(address):
        raise InputError(f"--port {args.port}: a server already answers at {address}; "
                         "choose another port")
    page = address + runs_page(uri, args.experiment)  # emkit.tracking: the runs table
    verbose = getattr(args, "verbose", False)
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, start_new_session=True,
                                  stdout=None if verbose else log,
                                  stderr=None if verbose else subprocess.STDOUT)
        try:
            _wait_until_answering(server, address, log)
            charts = page + ("&" if "?" in page else "?") + "compareRunsMode=CHART"
            print(f"MLflow UI: {page}\n  the runs' metric charts side by side: {charts}\n"
                  "  Ctrl-C stops the server", flush=True)
            return server.wait()
        finally:
            stop_group(server)


def _answers(address: str) -> bool:
    try:
        with urllib.request.urlopen(address + "/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _wait_until_answering(server, address: str, log) -> None:
    """Returns once ``address`` answers; raises if the server exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    print(f"starting the MLflow UI on {address} ...", file=sys.stderr, flush=True)
    while not _answers(address):
        if server.poll() is not None:
            log.seek(0)
            lines = [line for line in log.read().decode(errors="replace").splitlines()
                     if line.strip()]
            last = lines[-1].strip() if lines else "no output"
            raise InputError(f"the MLflow server stopped with status {server.returncode} "
                             f"before it answered at {address}: {last[:200]}")
        if time.monotonic() > deadline:
            raise InputError(f"the MLflow server did not answer at {address} within "
                             f"{START_TIMEOUT_S} s")
        time.sleep(0.5)


def stop_group(server, timeout: float = 10.0) -> None:
    """Stops the server's process group: SIGTERM, then SIGKILL for what remains.

    Args:
        server: the ``subprocess.Popen`` of the server, started in a new session (its
            pid is the group's id).
        timeout: seconds to wait for the group to exit after each signal.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(server):
            time.sleep(0.1)
        if not _group_alive(server):
            break
    server.wait()


def _group_alive(server) -> bool:
    server.poll()  # reap the leader once it exits
    try:
        os.killpg(server.pid, 0)
    except ProcessLookupError:
        return False
    return True
