"""Units as Python users write them, turned into what the protocol carries: memory as
bytes or ``"256M"``, CPU as cores (``0.5``) or millicores (``"500m"``), durations as
seconds or :class:`datetime.timedelta`. The grammar is the CLI's (``cli/src/units.rs``).
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

from .errors import InvalidArgument

#: Memory given as bytes (``int``) or a size with a unit (``"256M"``, ``"1.5GiB"``).
Memory = int | str
#: CPU given as cores (``0.5``, ``2``) or millicores (``"500m"``).
Cpu = float | int | str
#: A duration given as seconds or a ``timedelta``.
Seconds = float | int | timedelta

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")
_MEMORY_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "ki": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mi": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gi": 1 << 30,
    "gib": 1 << 30,
    "t": 1 << 40,
    "ti": 1 << 40,
    "tib": 1 << 40,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
}
_U64_MAX = (1 << 64) - 1


def memory_bytes(value: Memory) -> int:
    """Bytes from an ``int`` or a size string. ``K``, ``M``, ``G``, ``T`` (and ``KiB``,
    ``Mi``, …) are powers of 1024, as Docker reads them; ``KB``, ``MB``, ``GB``, ``TB``
    powers of 1000; no unit or ``B`` is bytes. Case-insensitive.

    >>> memory_bytes("256M")
    268435456
    >>> memory_bytes("1.5GB")
    1500000000
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"memory must be bytes (int) or a size such as '256M', not {value!r}")
    if isinstance(value, int):
        if not 0 <= value <= _U64_MAX:
            raise InvalidArgument(f"invalid memory size {value}: not between 0 and 2^64-1 bytes")
        return value
    m = _MEMORY.match(value)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _MEMORY_UNITS:
        raise InvalidArgument(
            f"invalid memory size {value!r}: expected a number with an optional unit, "
            "e.g. 512M, 1.5G, 256MiB, 1000000"
        )
    number = m.group(1)
    scale = _MEMORY_UNITS[unit]
    # Exact for integers; a fraction must come to whole bytes.
    if "." in number:
        whole, _, frac = number.partition(".")
        denominator = int("1" + "0" * len(frac))
        numerator = int(whole or "0") * denominator + int(frac or "0")
        total, rest = divmod(numerator * scale, denominator)
        if rest:
            raise InvalidArgument(f"invalid memory size {value!r}: not a whole number of bytes")
    else:
        total = int(number) * scale
    if total > _U64_MAX:
        raise InvalidArgument(f"invalid memory size {value!r}: too large")
    return total


def cpu_millis(value: Cpu) -> int:
    """Thousandths of a core from cores (``0.5``) or millicores (``"500m"``; a string
    without ``m`` is cores)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"cpu must be cores (float) or millicores such as '500m', not {value!r}")
    try:
        if isinstance(value, str) and value.strip().endswith("m"):
            millis = float(int(value.strip()[:-1]))
        else:
            millis = float(value) * 1000
    except ValueError:
        raise InvalidArgument(
            f"invalid cpu {value!r}: expected cores (0.5, 2) or millicores ('500m')"
        ) from None
    if not math.isfinite(millis) or millis < 0 or millis > _U64_MAX:
        raise InvalidArgument(f"invalid cpu {value!r}: not a number of cores >= 0")
    rounded = round(millis)
    if abs(millis - rounded) > 1e-6:
        raise InvalidArgument(f"invalid cpu {value!r}: finer than a thousandth of a core")
    return rounded


def duration(value: Seconds, what: str = "duration") -> timedelta:
    """A ``timedelta`` from seconds or a ``timedelta``; negative is refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float, timedelta)):
        raise TypeError(f"{what} must be seconds (float) or a timedelta, not {value!r}")
    if isinstance(value, timedelta):
        d = value
    else:
        if not math.isfinite(value):
            raise InvalidArgument(f"invalid {what} {value!r}: not a finite number of seconds")
        d = timedelta(seconds=value)
    if d < timedelta(0):
        raise InvalidArgument(f"invalid {what} {value!r}: negative")
    return d


def seconds(value: Seconds, what: str = "duration") -> float:
    """Seconds (float) from seconds or a ``timedelta``; negative is refused."""
    return duration(value, what).total_seconds()
