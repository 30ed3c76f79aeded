"""Search spaces: which recipe keys a search varies, and over which values.

A space file is one YAML mapping from a recipe key, dotted as in ``--set``, to a
distribution::

    train.learning_rate: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
    sampler.batch_size: {type: int, low: 4, high: 16, step: 4}
    train.optimizer: {type: categorical, choices: [adam, sgd]}
    sampler.augment:            # a choice may be any YAML value, e.g. a whole list
      type: categorical
      choices:
        - [{name: flip}]
        - [{name: flip}, {name: elastic, p: 0.5}]

Keys of a distribution: ``float``: ``low``, ``high``, ``log`` (default false),
``step`` (optional; not with ``log``); ``int``: ``low``, ``high``, ``step`` (default
1), ``log``; ``categorical``: ``choices``. A trial's values become ``key=value``
override strings that :func:`emkit.recipes.apply_overrides` reads back as the same
values. Optuna stores a categorical choice that is a list or mapping as its YAML
text (e.g. ``"[{name: flip}]"``); the override sets the value itself.

>>> space = parse_space({"train.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3,
...                                              "log": True}}, source="space.yaml")
>>> params_to_overrides({"train.learning_rate": 1e-05}, space)
['train.learning_rate=1.0e-05']
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import yaml

from emkit.errors import InputError
from emkit.io.text import read_yaml_mapping

#: The keys each distribution type allows (``type`` aside), and which are required.
ALLOWED_KEYS = {
    "float": ({"low", "high", "log", "step"}, {"low", "high"}),
    "int": ({"low", "high", "log", "step"}, {"low", "high"}),
    "categorical": ({"choices"}, {"choices"}),
}


@dataclass(frozen=True)
class Param:
    """One searched recipe key.

    Attributes:
        key: the dotted recipe key (``train.learning_rate``); also the Optuna parameter name.
        type: ``"float"``, ``"int"`` or ``"categorical"``.
        low: the smallest value (float and int).
        high: the largest value, included (float and int).
        log: sample on a log scale.
        step: the grid of a discrete float or int, or None.
        choices: the values of a categorical, as the recipe takes them.
    """

    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def optuna_choices(self) -> tuple:
        """The choices as Optuna stores them: scalars as they are, others as YAML text."""
        return tuple(_optuna_choice(c) for c in self.choices)


def read_space(path) -> list[Param]:
    """The parameters of a space file (see the module docstring).

    Raises:
        InputError: the file is missing, not YAML, or a distribution is malformed;
            the message names the file and the key.
    """
    data = read_yaml_mapping(path, what="search space", empty_ok=True)
    return parse_space(data, source=str(path))


def parse_space(data, *, source: str = "<space>") -> list[Param]:
    """The parameters of a space mapping; ``source`` names it in errors.

    Args:
        data: ``{recipe key: distribution mapping}``, as read from a space file.
        source: what to call the space in error messages (its file).

    Returns:
        One :class:`Param` per key, in the mapping's order.
    """
    if not isinstance(data, dict) or not data:
        raise InputError(
            f"search space {source!r}: expected a mapping of recipe keys to distributions, "
            f"e.g. 'train.learning_rate: {{type: float, low: 1.0e-5, high: 1.0e-3, log: true}}'"
        )
    return [_parse_param(str(key), spec, source) for key, spec in data.items()]


def _parse_param(key: str, spec, source: str) -> Param:
    where = f"search space {source!r}, key {key!r}"
    if not key or any(not part for part in key.split(".")):
        raise InputError(f"{where}: expected a dotted recipe key such as train.learning_rate")
    if not isinstance(spec, dict):
        raise InputError(f"{where}: expected a mapping with a 'type', got {spec!r}")
    kind = spec.get("type")
    if kind not in ALLOWED_KEYS:
        raise InputError(f"{where}: type {kind!r} is not one of {', '.join(ALLOWED_KEYS)}")
    allowed, required = ALLOWED_KEYS[kind]
    unknown = sorted(set(spec) - allowed - {"type"})
    if unknown:
        raise InputError(
            f"{where}: unknown {', '.join(map(repr, unknown))} for type {kind}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    missing = sorted(required - set(spec))
    if missing:
        raise InputError(f"{where}: type {kind} needs {', '.join(missing)}")
    if kind == "categorical":
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise InputError(f"{where}: choices must be a non-empty list, got {choices!r}")
        stored = [_optuna_choice(c) for c in choices]
        if len({(type(c), c) for c in stored}) != len(stored):
            raise InputError(f"{where}: choices repeat a value: {choices!r}")
        return Param(key, kind, choices=tuple(choices))
    number = _to_int if kind == "int" else _to_float
    low, high = number(spec["low"], f"{where}: low"), number(spec["high"], f"{where}: high")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise InputError(f"{where}: log must be true or false, got {log!r}")
    step = spec.get("step", 1 if kind == "int" else None)
    if step is not None:
        step = number(step, f"{where}: step")
        if step <= 0:
            raise InputError(f"{where}: step must be positive, got {step!r}")
    if low >= high:
        raise InputError(f"{where}: low must be less than high, got low={low!r}, high={high!r}")
    if log and low <= 0:
        raise InputError(f"{where}: a log scale needs low > 0, got low={low!r}")
    if log and step is not None and not (kind == "int" and step == 1):
        raise InputError(f"{where}: log and step cannot be combined")
    return Param(key, kind, low=low, high=high, log=log, step=step)


def _to_float(value, what: str) -> float:
    # YAML 1.1 reads 1e-5 (no dot) as text; a number written so is still meant as one.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{what}: expected a finite number, got {value!r}")
    return float(value)


def _to_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{what}: expected an integer, got {value!r}")
    return value


def _optuna_choice(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return yaml_text(value)


def yaml_text(value) -> str:
    """``value`` as one line of YAML that :func:`yaml.safe_load` reads back as ``value``.

    >>> yaml_text(1e-05), yaml_text([{"name": "flip"}])
    ('1.0e-05', '[{name: flip}]')
    """
    text = yaml.safe_dump(value, default_flow_style=True, width=2**31, sort_keys=False).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")].strip()
    if "\n" in text or yaml.safe_load(text) != value:
        raise InputError(f"value {value!r} cannot be written as a one-line key=value override")
    return text


def suggest(trial, space: list[Param]) -> dict:
    """Asks an Optuna trial for a value of each parameter: ``{key: Optuna value}``.

    Args:
        trial: the Optuna trial.
        space: the parameters (:func:`parse_space`).
    """
    params = {}
    for p in space:
        if p.type == "float":
            params[p.key] = trial.suggest_float(p.key, p.low, p.high, log=p.log, step=p.step)
        elif p.type == "int":
            params[p.key] = trial.suggest_int(p.key, p.low, p.high, log=p.log, step=p.step or 1)
        else:
            params[p.key] = trial.suggest_categorical(p.key, p.optuna_choices())
    return params


def recipe_value(param: Param, value):
    """The recipe's value for an Optuna value of ``param`` (a categorical's YAML text decoded).

    Args:
        param: the parameter.
        value: the value as Optuna stores it.
    """
    if param.type != "categorical":
        return value
    stored = param.optuna_choices()
    for choice, original in zip(stored, param.choices):
        if type(choice) is type(value) and choice == value:
            return original
    raise InputError(f"{param.key}: {value!r} is not one of the space's choices {param.choices!r}")


def params_to_overrides(params: dict, space: list[Param]) -> list[str]:
    """``key=value`` overrides for Optuna parameters (a trial's ``params``, ``best_params``).

    Keys the space does not know (a space file edited since) are written as they are.

    Args:
        params: ``{key: Optuna value}``.
        space: the parameters (:func:`parse_space`).
    """
    by_key = {p.key: p for p in space}
    return [f"{key}={yaml_text(recipe_value(by_key[key], value) if key in by_key else value)}"
            for key, value in params.items()]


def check_space(space: list[Param], recipe, overrides=(), *, quick: bool = False,
                source: str = "<space>") -> None:
    """Loads the recipe with each parameter at each end of its range (each choice of a
    categorical), so that a key the recipe lacks or a value it refuses fails before a
    study starts.

    Args:
        space: the parameters (:func:`parse_space`).
        recipe: a shipped recipe's name or a recipe YAML path.
        overrides: ``key=value`` strings applied before each parameter's value.
        quick: apply the recipe's ``--quick`` budget.
        source: what to call the space in error messages (its file).

    Raises:
        InputError: naming ``source``, the key and the value, with the recipe's reason.
    """
    from emkit.recipes import load_recipe

    for p in space:
        values = p.choices if p.type == "categorical" else (p.low, p.high)
        for value in values:
            override = f"{p.key}={yaml_text(value)}"
            try:
                load_recipe(recipe, [*overrides, override], quick=quick)
            except InputError as exc:
                raise InputError(
                    f"search space {source!r}, key {p.key!r}: the recipe refuses "
                    f"{override!r}: {exc}"
                ) from None


__all__ = [
    "Param",
    "check_space",
    "params_to_overrides",
    "parse_space",
    "read_space",
    "recipe_value",
    "suggest",
    "yaml_text",
]
