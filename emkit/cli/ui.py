"""``emkit ui``: the MLflow UI on localhost, over emkit's store (default ``mlruns/``).

    emkit ui [--port 5000] [--tracking-uri URI]
"""

from __future__ import annotations

import argparse
import subprocess


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "ui", help="start the MLflow UI on localhost",
        description="Start the MLflow UI on 127.0.0.1 over the tracking store that "
                    "`emkit recipe run` writes to (sqlite:///mlruns/mlflow.db unless "
                    "--tracking-uri or $MLFLOW_TRACKING_URI says otherwise).",
    )
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--tracking-uri", help="the store to browse")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="print the command instead of running it")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from emkit.tracking import ui_command

    command = ui_command(args.tracking_uri, port=args.port)
    if args.print_only:
        print(" ".join(command))
        return 0
    print(f"MLflow UI on http://127.0.0.1:{args.port} (Ctrl-C stops it)")
    return subprocess.call(command)
