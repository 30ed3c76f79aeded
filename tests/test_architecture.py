"""The shape of the package: imports point down the pipeline, no cycles, one module per
integration, and the NumPy stages load no TensorFlow."""

import ast
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "emkit"

#: The packages (and top-level modules) in pipeline order: each may import only from
#: itself and the ones before it. README's "where things live" lists them in this order.
ORDER = ["errors", "io", "datasets", "preprocess", "targets", "augment", "models", "sampling",
         "training", "inference", "postprocess", "metrics", "export", "tracking", "view",
         "tune", "align", "blockwise", "recipes", "ensemble", "cli"]

#: Third-party integrations and the one module that may import each.
INTEGRATIONS = {"mlflow": "emkit.tracking", "distributed": "emkit.blockwise.cluster",
                "dask": "emkit.blockwise.cluster", "optuna": "emkit.tune.study",
                "neuroglancer": "emkit.view"}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path) -> list[str]:
    """Every module that ``path`` imports, at the top or inside a function."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [f"{node.module}.{a.name}" for a in node.names] + [node.module]
    return names


def emkit_graph() -> dict[str, set[str]]:
    """Module -> the emkit modules it imports (a package's own ``__init__`` left out)."""
    known = modules()
    graph = defaultdict(set)
    for name, path in known.items():
        for target in imports(path):
            if not target.startswith("emkit"):
                continue
            while target not in known:
                target = target.rpartition(".")[0]
            if target != name and target != "emkit" and not name.startswith(target + "."):
                graph[name].add(target)
    return graph


def package(module: str) -> str:
    return module.split(".")[1]


def test_the_order_names_every_package():
    assert {package(m) for m in modules() if m != "emkit"} == set(ORDER)


def test_every_import_points_down_the_pipeline():
    upward = sorted(f"{a} -> {b}" for a, targets in emkit_graph().items() for b in targets
                    if ORDER.index(package(b)) > ORDER.index(package(a)))
    assert upward == []


def test_no_import_cycle():
    graph = emkit_graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(modules()):
        if module not in index:
            visit(module)
    assert cycles == []


def test_each_integration_is_imported_by_one_module():
    users = defaultdict(set)
    for name, path in modules().items():
        for target in imports(path):
            top = target.split(".")[0]
            if top in INTEGRATIONS:
                users[top].add(name)
    for library, module in INTEGRATIONS.items():
        assert users[library] <= {module}, (library, users[library])


@pytest.mark.parametrize("name", ["io", "targets", "postprocess", "metrics", "datasets",
                                  "preprocess", "export", "tracking", "view"])
def test_the_numpy_stages_load_no_tensorflow_or_keras(name):
    code = (f"import sys, json; import emkit.{name}; "
            "print(json.dumps(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('tensorflow', 'keras', 'jax', 'torch'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    assert json.loads(done.stdout) == []


def test_the_readme_map_lists_the_packages_in_this_order():
    import re

    text = (ROOT / "README.md").read_text()
    block = text.split("## Where things live", 1)[1].split("```")[1]
    listed = re.findall(r"^emkit/(\w+)", block, re.MULTILINE)
    assert listed == ORDER


def test_every_docstring_example_runs():
    import doctest
    import importlib

    failed = {}
    for name in sorted(modules()):
        module = importlib.import_module(name)
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False,
                                 report=False)
        if result.failed:
            failed[name] = result.failed
    assert failed == {}


def test_docstring_references_to_emkit_names_resolve():
    """``:func:`emkit.x.y``` and the like name something that exists (moves break them)."""
    import importlib
    import re

    pattern = re.compile(r":(?:mod|func|class|data|meth|attr):`~?(emkit\.[A-Za-z0-9_.]+)`")
    refs = {m.group(1).rstrip(".") for path in modules().values()
            for m in pattern.finditer(path.read_text())}
    broken = []
    for ref in sorted(refs):
        parts = ref.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            try:
                for name in parts[i:]:
                    obj = getattr(obj, name)
            except AttributeError:
                broken.append(ref)
            break
        else:
            broken.append(ref)
    assert len(refs) > 100 and broken == []
