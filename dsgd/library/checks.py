"""Arguments of the library's calls checked where they are given: a count is a whole number, not
truncated from a float or read from a bool."""
from __future__ import annotations

from typing import Any

import numpy as np


def whole_number(what: str, value: Any, lowest: int = 1) -> int:
    """VALUE as an int of at least LOWEST; TypeError for a float or a bool, ValueError below LOWEST."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an integer >= {lowest}, got {value!r}")
    if value < lowest:
        raise ValueError(f"{what} must be >= {lowest}, got {value}")
    return int(value)
