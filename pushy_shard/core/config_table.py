"""The table machinery behind config.py: each setting is one dataclass field whose metadata says
how config.json spells it and how its value is checked, so a section's dataclass is its table
and adding a setting is adding one field. `read` walks such a table over one JSON object.

The checks here are the generic ones (types, ranges, units); config.py adds its own. A check
takes the dotted key and the JSON value and returns the field's value or raises ConfigError;
`text` never shows the value it refuses, so a bad secretKey is never echoed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypeVar

from pushy_shard.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "MAX_BYTES", "MAX_DELAY_S", "Check", "Int", "Row", "boolean", "expected", "group", "key",
    "name_of", "optional", "positive", "read", "row", "seconds", "show", "size", "text",
]

MAX_DELAY_S = 3600.0
MAX_BYTES = 1024**3

Check = Callable[[str, Any], Any]
_T = TypeVar("_T")
_D = TypeVar("_D", bound="DataclassInstance")

_ROW = "config_row"
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_SIZE_RE = re.compile(r"(\d{1,15}(?:\.\d{1,15})?|\.\d{1,15})\s*([KMG]?)B?", re.I | re.ASCII)
_DIGITS_RE = re.compile(r"\d{1,9}", re.ASCII)


# -- the table --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """How config.json sets one dataclass field (kept in the field's metadata)."""

    check: Check  # for a group: gets the read section, refuses combinations of its values
    name: str | None = None  # its config.json name, where that is not the field's
    env: str | None = None  # an environment variable that overrides it (an `Int` only)
    required: str = ""  # for a field without a default: what it is, said when it is missing
    group: type[DataclassInstance] | None = None  # a section of its own, read with its table


def row(check: Check, *, name: str | None = None, env: str | None = None,
        required: str = "") -> dict[str, Row]:
    """Field metadata for a setting that needs more of `dataclasses.field` than `key` gives."""
    return {_ROW: Row(check, name, env, required)}


def key(default: _T, check: Check, *, name: str | None = None, env: str | None = None) -> _T:
    """One setting: its default, its check, and its config.json name where that differs."""
    return field(default=default, metadata=row(check, name=name, env=env))


def _same(path: str, value: _T) -> _T:
    return value


def group(cls: type[_D], check: Callable[[str, _D], _D] | None = None) -> _D:
    """A nested section (a JSON object), all defaults unless given; `check` refuses
    combinations of its values once each one passed its own check."""
    return field(default=cls(), metadata={_ROW: Row(check or _same, group=cls)})


def read(cls: type[_D], path: str, value: object, env: Mapping[str, str],
         **defaults: Any) -> _D:
    """Validate one JSON object against the table of `cls`. `path` is the object's dotted
    key ("config" at the top). Absent keys keep the dataclass default (or one of `defaults`);
    then the environment overrides of the table apply."""
    table = {(r := f.metadata[_ROW]).name or f.name: (f, r) for f in fields(cls)}
    obj = _object(path, value, tuple(table))
    prefix = "" if path == "config" else f"{path}."
    for name, (f, r) in table.items():  # before any value, as a missing key matters most
        if name not in obj and f.default is MISSING and f.default_factory is MISSING:
            why = f" ({r.required})" if r.required else ""
            raise ConfigError(prefix + name, f"is required{why}")
    values = dict(defaults)
    for name, (f, r) in table.items():
        if name in obj:
            raw = obj[name]
            if r.group is not None:
                raw = read(r.group, prefix + name, raw, env)
            values[f.name] = r.check(prefix + name, raw)
        if r.env is not None and (override := _env_int(r.env, env.get(r.env), r.check)):
            values[f.name] = override
    return cls(**values)


def _object(path: str, value: object, known: tuple[str, ...]) -> dict[str, Any]:
    """A JSON object without its "//" comment keys; unknown keys are errors (typos matter)."""
    if not isinstance(value, dict):
        raise expected(path, "an object", value)
    out: dict[str, Any] = {}
    for k, v in value.items():
        if isinstance(k, str) and k.startswith("//"):
            continue
        if k not in known:
            named = name_of(k) if path == "config" else f"{path}.{name_of(k)}"
            raise ConfigError(named, "unknown key; known keys are: " + ", ".join(known))
        out[k] = v
    return out


def _env_int(var: str, raw: str | None, check: Check) -> int | None:
    """An integer environment override, or None when the variable is unset or empty."""
    if raw is None or not raw.strip():
        return None
    if not isinstance(check, Int):
        raise TypeError(f"{var}: environment overrides are integers")
    if not _DIGITS_RE.fullmatch(raw.strip()):
        raise ConfigError(var, f"expected {check.what}, found {show(raw)}")
    return check(var, int(raw.strip()))


# -- messages ---------------------------------------------------------------------------------

_JSON_NAMES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


def show(value: object) -> str:
    """A short one-line rendering of a (non-secret) value for messages."""
    try:
        rendered = ascii(value)
    except ValueError:  # an int too long to print (sys.get_int_max_str_digits)
        return "a huge integer"
    return rendered if len(rendered) <= 40 else rendered[:37] + "..."


def name_of(k: object) -> str:
    """A key as it may appear in a one-line message."""
    rendered = k if isinstance(k, str) else ascii(k)
    if rendered.isprintable() and len(rendered) <= 64:
        return rendered
    return show(rendered)


def expected(path: str, what: str, value: object) -> ConfigError:
    """"expected X, found Y" with Y the JSON name of the value's type (never the value)."""
    kind = _JSON_NAMES.get(type(value), type(value).__name__)
    return ConfigError(path, f"expected {what}, found {kind}")


# -- generic checks ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Int:
    """An integer from `low` to `high`, never a boolean: ports, process counts, counts."""

    low: int
    high: int

    @property
    def what(self) -> str:
        return f"an integer from {self.low} to {self.high}"

    def __call__(self, path: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise expected(path, self.what, value)
        if not self.low <= value <= self.high:
            raise ConfigError(path, f"expected {self.what}, found {show(value)}")
        return value


def optional(check: Check) -> Check:
    """`check`, where null means "the default" (None)."""
    return lambda path, value: None if value is None else check(path, value)


def boolean(path: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise expected(path, "true or false", value)
    return value


def text(path: str, value: object) -> str:
    """A non-blank string."""
    if not isinstance(value, str):
        raise expected(path, "a non-empty string", value)
    if not value.strip():
        raise ConfigError(path, "expected a non-empty string, found an empty one")
    return value


def seconds(path: str, value: object) -> float:
    """A delay: above 0 and at most an hour."""
    what = f"a number of seconds above 0 and at most {MAX_DELAY_S:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise expected(path, what, value)
    if not 0 < value <= MAX_DELAY_S:  # also refuses NaN and infinities
        raise ConfigError(path, f"expected {what}, found {show(value)}")
    return float(value)


def positive(path: str, value: object) -> float:
    """A rate: a number above 0 (at most a million)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise expected(path, "a number above 0", value)
    if not 0 < value <= 1_000_000:
        raise ConfigError(path, f"expected a number above 0 and at most 1000000, "
                          f"found {show(value)}")
    return float(value)


def size(path: str, value: object) -> int:
    """Bytes from an int or a string such as "128K", "1.5M", "64kb" (K=1024)."""
    what = 'a byte count: an integer or a string such as "128K", "1M", "64kb"'
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise expected(path, what, value)
    if isinstance(value, int):
        count = Fraction(value)
    else:
        match = _SIZE_RE.fullmatch(value.strip())
        if match is None:
            raise ConfigError(path, f"expected {what}, found {show(value)}")
        count = Fraction(match.group(1)) * _UNITS[match.group(2).upper()]
    if count.denominator != 1:
        raise ConfigError(path, f"expected a whole number of bytes, found {show(value)}")
    if not 1 <= count <= MAX_BYTES:
        raise ConfigError(path, f"expected 1 byte to 1G, found {show(value)}")
    return int(count)
