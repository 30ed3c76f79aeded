"""Every command in the README's ``bash`` blocks parses as written, and the cheap ones run;
the worked example of a model family builds."""

import importlib
import re
import shlex
import sys
from pathlib import Path

import pytest

from emkit.cli.main import main, make_parser

ROOT = Path(__file__).resolve().parents[1]

# Commands cheap enough to run here (seconds each), exactly as the README writes them.
RUN = [
    "emkit recipe list",
    "emkit recipe show isbi_n4",
    "emkit data list",
    "emkit model list",
    "emkit model show n4 --input-shape 95,95",
    "emkit augment preview isbi_n4 --out grid.png",
]


def readme_commands() -> list[list[str]]:
    """The commands of the README's bash blocks, continuation lines joined, comments cut."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
    return commands


def test_the_readme_has_commands_and_the_cheap_list_is_in_it():
    commands = readme_commands()
    assert len(commands) > 30
    for line in RUN:
        assert shlex.split(line) in commands, line


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda argv: " ".join(argv)[:60])
def test_each_readme_command_parses(argv):
    if argv[0] == "make":
        makefile = (ROOT / "Makefile").read_text()
        targets = re.search(r"^\.PHONY:(.*)$", makefile, re.MULTILINE).group(1).split()
        assert all(a in targets or "=" in a for a in argv[1:]), argv
        return
    if argv[0] in ("docker", "mkdir"):
        return
    assert argv[0] == "emkit", argv
    make_parser().parse_args(argv[1:])  # argparse exits on anything it cannot parse


@pytest.mark.parametrize("line", RUN)
def test_cheap_readme_commands_run(line, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(shlex.split(line)[1:]) == 0
    assert capsys.readouterr().out


def test_the_adding_a_model_example_builds_a_model(tmp_path, monkeypatch):
    """The README's worked example, written out as a family folder, registers and builds."""
    import emkit.models
    from emkit.models import architectures, geometry
    from emkit.models.architectures import build_model, dict_to_spec

    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Adding a model"):text.index("## Where things live")]
    blocks = re.findall(r"```python\n# (emkit/models/stack/\S+): .*?\n(.*?)```", section,
                        re.DOTALL)
    assert [path for path, _ in blocks] == [
        "emkit/models/stack/spec.py", "emkit/models/stack/build.py",
        "emkit/models/stack/presets.py", "emkit/models/stack/__init__.py"]
    for path, code in blocks:
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code)
    monkeypatch.setattr(emkit.models, "__path__", [*emkit.models.__path__,
                                                   str(tmp_path / "emkit" / "models")])
    stack = importlib.import_module("emkit.models.stack")
    monkeypatch.setitem(architectures.FAMILIES, "stack", stack.FAMILY)
    monkeypatch.setitem(architectures.ARCHITECTURES, "stack4", stack.PRESETS["stack4"][0])
    spec = dict_to_spec({"family": "stack", "depth": 3, "filters": 4, "input_shape": [20, 24]})
    model = build_model(spec)
    assert model.output_shape == (None, 20, 24, 1)
    # the spec's formulas agree with the walk of the built model's layers
    assert geometry(model).fov == spec.field_of_view() == (7, 7)
    assert build_model("stack4", filters=2).output_shape == (None, 64, 64, 1)
    for name in [m for m in list(sys.modules) if m.startswith("emkit.models.stack")]:
        monkeypatch.delitem(sys.modules, name)
