"""One config system for all three commands: typed dataclasses filled from YAML plus ``key=value`` overrides.

Each stage declares its schema as (nested) dataclasses; this module only knows how to fill them, so a
recipe, a training config and an eval config all behave the same: unknown keys are errors with a
suggestion, values are type-checked, ``a.b=c`` reaches into nested sections, and the resolved config can be
printed or stored (``to_dict``) so every output records exactly what produced it.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from bayling.errors import ConfigError

T = TypeVar("T")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a one-line error for a missing file or bad syntax."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("config file not found", path=p)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"invalid YAML: {problem}", path=p, line=line) from None
    except UnicodeDecodeError:
        raise ConfigError("file is not valid UTF-8", path=p) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping of keys to values", path=p)
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into a nested dict; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}' conflicts with another override of '{part}'")
        node[parts[-1]] = value
    return out


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str, source: str | None) -> Any:
    """Check ``value`` against the annotation ``tp``; allow the harmless int->float widening."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, source)
            except ConfigError as err:
                errors.append(err)
        raise errors[0] if errors else ConfigError("value may not be null", path=source, field=where)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"must be one of {list(args)}, got {value!r}", path=source, field=where)
        return value
    if origin in (list, tuple):
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            value = [value] if not isinstance(value, str) else [v for v in value.split(",") if v]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"expected a list, got {value!r}", path=source, field=where)
        inner = args[0] if args else Any
        return [_coerce(v, inner, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {value!r}", path=source, field=where)
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f"{where}.{k}", source) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"expected a section (mapping), got {value!r}", path=source, field=where)
        return from_dict(tp, value, source=source, prefix=f"{where}.")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "2e-5" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"expected a number, got {value!r}", path=source, field=where)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {value!r}", path=source, field=where)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"expected true/false, got {value!r}", path=source, field=where)
        return value
    if tp is str:
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
            raise ConfigError(f"expected a string, got {value!r}", path=source, field=where)
        return str(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"expected {_type_name(tp)}, got {value!r}", path=source, field=where)
    return value


def from_dict(cls: type[T], data: dict[str, Any], *, source: str | None = None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys are errors that suggest the closest known key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(prefix + c for c in close)}?)" if close else ""
            known = ", ".join(sorted(fields))
            raise ConfigError(f"unknown key{hint}; known keys: {known}", path=source, field=f"{prefix}{key}")
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}", source)
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError("required key is missing", path=source, field=f"{prefix}{name}")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    defaults: dict[str, Any] | None = None,
) -> T:
    """Defaults < YAML file < ``key=value`` overrides, checked against ``cls``."""
    data: dict[str, Any] = dict(defaults or {})
    source = None
    if path is not None:
        data = deep_merge(data, load_yaml(path))
        source = str(path)
    try:
        given = parse_overrides(overrides or [])
    except ConfigError as err:
        raise ConfigError(err.message, path=COMMAND_LINE) from None
    data = deep_merge(data, given)
    try:
        return from_dict(cls, data, source=source)
    except ConfigError as err:
        item = _override_for(err.field, overrides or [])
        if item is None:
            raise
        raise ConfigError(err.message, path=f"{COMMAND_LINE} '{item}'", field=err.field) from None


COMMAND_LINE = "command line override"


def _override_for(field: str | None, overrides: list[str]) -> str | None:
    """The ``key=value`` item that set ``field`` (or a section above it), so its error names the command
    line the user typed instead of a YAML file that never held that value. The last one wins, as in merging."""
    if not field:
        return None
    name = field.split("[", 1)[0]
    found = None
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if name == key or name.startswith(key + ".") or key.startswith(name + "."):
            found = item
    return found


def to_dict(obj: Any) -> Any:
    """Plain-data view of a config (for manifests, ``--print-config``, results.json)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False, allow_unicode=True)
