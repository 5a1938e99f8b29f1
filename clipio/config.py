"""Strict typed configs from YAML, shared by ``captioner`` and ``t2v``.

``from_dict(Dataclass, mapping)`` builds nested dataclasses and raises :class:`ConfigError` naming
the key for an unknown key or a value of the wrong type; ``apply_overrides`` applies dotted
``key=value`` strings (values parsed as YAML scalars).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration value is unknown, missing or of the wrong type; the message names it."""


# ----------------------------------------------------------------------------- strict loading
def _check(value: Any, tp: Any, name: str) -> Any:
    """Return ``value`` converted to type ``tp`` when it is safe (int → float), else raise."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check(value, a, name)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{name}: bad value {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return [_check(v, item, f"{name}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, name)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # PyYAML follows YAML 1.1, which reads `1e-4` (no dot) as a string: accept it as a number
        try:
            return float(value)
        except ValueError:
            pass
    if tp is Any or (isinstance(tp, type) and isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        return value
    tname = getattr(tp, "__name__", str(tp))
    if tp is str and isinstance(value, bool):  # YAML 1.1: no/yes/off/on are booleans
        raise ConfigError(f"{name}: expected str, got {value!r} (YAML reads no/yes/off/on as booleans: quote the "
                          f"word, e.g. {name}='no' on the command line or {name.rsplit('.', 1)[-1]}: \"no\" in a file)")
    raise ConfigError(f"{name}: expected {tname}, got {value!r}")


def from_dict(cls: type, d: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, strictly."""
    where = prefix or cls.__name__
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {d!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(f'{prefix}.{k}' if prefix else k for k in unknown)}"
                          f" (known: {', '.join(sorted(names))})")
    kwargs = {k: _check(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in d.items()}
    return cls(**kwargs)


def flat_hparams(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as flat ``a.b`` keys with TensorBoard-friendly values (hparams: scalars kept, the rest str)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_hparams(v, key + "."))
        else:
            out[key] = v if isinstance(v, int | float | str | bool) else str(v)
    return out


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` strings to a nested dict (values parsed as YAML scalars)."""
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r}: expected key=value (e.g. train.max_steps=100)")
        key, raw = ov.split("=", 1)
        parts = key.strip().split(".")
        node = d
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {ov!r}: {p} is not a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    return d


def resolve_config(value: str | Path, presets: str) -> Path:
    """A config file: ``value`` when it is a file, else the preset of that name shipped inside the
    package ``presets`` (e.g. ``"t2v.presets"``): ``tiny`` or ``tiny.yaml``. Installed or not, the
    presets are found as package data; a missing one is an error that lists them."""
    path = Path(value)
    if path.is_file():
        return path
    names = []
    if path.parent == Path("."):  # a bare name: look it up among the presets
        from importlib.resources import files

        folder = files(presets)
        hit = folder / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
        if hit.is_file():
            return Path(str(hit))
        names = sorted(f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml"))
    hint = f"; presets: {', '.join(names)}" if names else ""
    raise ConfigError(f"config file {value} does not exist{hint}")


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping (``{}`` for an empty file); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    d = yaml.safe_load(path.read_text()) or {}
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return d
