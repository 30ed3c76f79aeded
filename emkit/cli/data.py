"""``emkit data``: list the known data sets, check their files, print their paths.

emkit never downloads data: ``emkit data check NAME`` says which files to put where.
"""

from __future__ import annotations

import argparse

from emkit.cli.arguments import add_command

ACTIONS = ("list", "check", "path")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "data",
                         help="list data sets, check their files, print their paths",
                         description="Find EM data sets on disk. Data sets live under a data "
                                     "root: --root, else $EMKIT_DATA, else ~/.cache/emkit/data "
                                     "($XDG_CACHE_HOME/emkit/data). ISBI 2012 (25 sections) "
                                     "ships with emkit. Nothing is ever downloaded.",
                         epilog="examples:\n  emkit data list          (the default action)\n  "
                                "emkit data check medulla --root /data/em\n  emkit data path "
                                "isbi2012 labels")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    root_help = "data root (default: $EMKIT_DATA, else ~/.cache/emkit/data)"

    listing = actions.add_parser(
        "list", help="show each data set, where it is found and its checksum status"
    )
    listing.add_argument("--root", help=root_help)
    listing.set_defaults(func=run)

    check = actions.add_parser(
        "check",
        help="verify a data set's files (exit 2, saying what to put where, if missing)",
    )
    check.add_argument("name", metavar="NAME", help="data set name (see 'emkit data list')")
    check.add_argument("--root", help=root_help)
    check.set_defaults(func=run)

    path = actions.add_parser(
        "path", help="print the volume spec of a data set's raw, labels or test volume"
    )
    path.add_argument("name", metavar="NAME", help="data set name (see 'emkit data list')")
    path.add_argument(
        "role", metavar="ROLE", nargs="?", default="raw",
        help="raw (default), labels or test",
    )
    path.add_argument("--root", help=root_help)
    path.set_defaults(func=run)
    parser.set_defaults(func=run, action="list")
    return parser


def run(args) -> int:
    from emkit.datasets import DATASETS, get_info
    from emkit.datasets.files import check_files, data_root, role_spec, root_origin, verify_files

    root = getattr(args, "root", None)
    if args.action == "list":
        print(f"data root: {data_root(root)} ({root_origin(root)})")
        for info in DATASETS.values():
            _print_dataset(info, check_files(info, root=root))
        return 0
    info = get_info(args.name)
    if args.action == "path":
        print(role_spec(info, args.role, root=root))
        return 0
    if not info.files:
        print(f"{info.name}: no files to check ({info.description})")
        return 0
    statuses = check_files(info, root=root)
    _print_dataset(info, statuses)
    verify_files(info, root=root)
    print(f"{info.name}: all required files present and intact")
    return 0


def _print_dataset(info, statuses) -> None:
    if not info.files:
        print(f"\n{info.name}: {info.description}")
        return
    required = [s for s in statuses if s.file.required]
    if any(s.status in ("mismatch", "damaged") for s in statuses):
        state = "DAMAGED"
    elif all(s.status != "missing" for s in required):
        state = "found"
    elif any(s.status != "missing" for s in required):
        state = "incomplete"
    else:
        state = "missing"
    folders = sorted({str(s.path.parent) for s in statuses if s.status != "missing"})
    where = ", ".join(folders) or str(statuses[0].path.parent)
    if info.package_folder is not None and str(info.package_folder) in folders:
        where += " (shipped with emkit)"
    print(f"\n{info.name}: {state} in {where}")
    print(f"  {info.description}")
    for s in statuses:
        print(f"  {s.file.name:<28} {s.status:<10} {s.detail}")
    if state in ("missing", "incomplete"):
        print(f"  download: {info.url}")
