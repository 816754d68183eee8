"""The one grammar of "name:key=value,..." specs (topologies, codecs, partitions) and option checks.

Every spec is read by `split_spec`, so an option without "=", an empty key and a key given twice
are refused alike wherever a spec is written."""
from __future__ import annotations

import numbers
import os
import re
from typing import Any, Dict, Optional, Tuple

from .errors import TopologyError

_INT = re.compile(r"[+-]?\d+")
_TEXT_KEYS = {"path", "weights", "format"}  # kept as written, even when they look like numbers


def parse_value(text: str) -> Any:
    """'4' -> 4, '0.5' -> 0.5, anything else stays a string."""
    text = text.strip()
    if _INT.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def split_spec(spec: Any, what: str, error: type = ValueError) -> Tuple[str, Dict[str, str]]:
    """'top-k:ratio=0.1' -> ('top-k', {'ratio': '0.1'}), values as written. WHAT names the kind of
    spec in the error ('topology', 'codec', 'partition'); ERROR is the exception raised."""
    if not isinstance(spec, str) or not spec.strip():
        raise error(f"empty {what} spec {spec!r}")
    name, _, rest = spec.strip().partition(":")
    options: Dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise error(f"bad option '{item}' in {what} spec '{spec}' (expected key=value)")
        if key in options:
            raise error(f"option '{key}' given twice in {what} spec '{spec}'")
        options[key] = value.strip()
    return name.strip(), options


def as_bool(what: str, key: str, text: str, error: type = ValueError) -> bool:
    """'true' or 'false' (as the command line's switches are written); anything else is refused,
    never read as false."""
    value = str(text).strip().lower()
    if value not in ("true", "false"):
        raise error(f"{what} option {key} must be true or false, got {text!r}")
    return value == "true"


def parse_spec(spec: str) -> Tuple[str, Dict[str, Any]]:
    """Split 'torus:rows=4,cols=4' into ('torus', {'rows': 4, 'cols': 4})."""
    name, raw = split_spec(spec, "topology", TopologyError)
    return name, {key: value if key in _TEXT_KEYS else parse_value(value) for key, value in raw.items()}


def parse_option(item: str, where: str) -> Tuple[str, Any]:
    """'rows=4' -> ('rows', 4) (the `topologies` command's --option); `where` names the source in the error."""
    key, eq, value = item.partition("=")
    key = key.strip()
    if not eq or not key:
        raise TopologyError(f"bad option '{item}' in {where} (expected key=value)")
    return key, value.strip() if key in _TEXT_KEYS else parse_value(value)


def as_int(family: str, key: str, value: Any, minimum: Optional[int] = None) -> int:
    """An integer option, refusing bools, fractions and strings."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not float(value).is_integer()):
        raise TopologyError(f"{family} option {key} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise TopologyError(f"{family} option {key} must be >= {minimum}, got {value}")
    return value


def as_probability(family: str, key: str, value: Any) -> float:
    """A float option in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise TopologyError(f"{family} option {key} must be a number in [0, 1], got {value!r}")
    return float(value)


def as_path(family: str, key: str, value: Any) -> str:
    """A non-empty path option (required: files have no default)."""
    if value is None:
        raise TopologyError(f"{family} needs option {key}=FILE")
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise TopologyError(f"{family} option {key} must be a file path, got {value!r}")
    return value
