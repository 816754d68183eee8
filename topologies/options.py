"""Family options: parsing "name:key=value,..." specs and checking option values."""
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


def parse_option(item: str, where: str) -> Tuple[str, Any]:
    """'rows=4' -> ('rows', 4); `where` names the source in the error."""
    key, eq, value = item.partition("=")
    key = key.strip()
    if not eq or not key:
        raise TopologyError(f"bad option '{item}' in {where} (expected key=value)")
    return key, value.strip() if key in _TEXT_KEYS else parse_value(value)


def parse_spec(spec: str) -> Tuple[str, Dict[str, Any]]:
    """Split 'torus:rows=4,cols=4' into ('torus', {'rows': 4, 'cols': 4})."""
    if not isinstance(spec, str) or not spec.strip():
        raise TopologyError(f"empty topology spec {spec!r}")
    name, _, rest = spec.strip().partition(":")
    options: Dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, value = parse_option(item, f"spec '{spec}'")
        if key in options:
            raise TopologyError(f"option '{key}' given twice in spec '{spec}'")
        options[key] = value
    return name.strip(), options


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
