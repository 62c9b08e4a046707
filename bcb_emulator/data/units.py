"""Units strings of netCDF files, compared by meaning: ``kg/m2`` = ``kg m-2`` = ``kg m^-2``.

The reader checks each variable's ``units`` attribute against the registry
(``bcb_emulator.variables``) with :func:`same`. A string is parsed into a scale factor and
exponents of kg, m, s and K: an optional leading factor (``10^-11``, ``10**-11``, ``1e-11``),
then symbols with optional integer exponents (``m2``, ``m^2``, ``m**2``, ``s-1``), separated by
spaces, ``*`` or ``.``; each ``/`` divides by the symbol group after it. Known symbols: ``kg g m
km mm s min h hr hour d day K W Pa hPa mb mbar``, and ``1 - % fraction`` for numbers.

Example:

>>> same("kg m-2 s-1", "kg/m2/s")
True
>>> same("kg/kg", "10^-11 kg/kg")
False
>>> scale("10^-11 kg/kg", "kg/kg")
1e-11
"""

from __future__ import annotations

import math
import re

#: Symbol -> (factor to SI, exponents of kg, m, s, K).
_SYMBOLS: dict[str, tuple[float, tuple[int, int, int, int]]] = {
    "kg": (1.0, (1, 0, 0, 0)),
    "g": (1e-3, (1, 0, 0, 0)),
    "m": (1.0, (0, 1, 0, 0)),
    "km": (1e3, (0, 1, 0, 0)),
    "mm": (1e-3, (0, 1, 0, 0)),
    "s": (1.0, (0, 0, 1, 0)),
    "min": (60.0, (0, 0, 1, 0)),
    "h": (3600.0, (0, 0, 1, 0)),
    "hr": (3600.0, (0, 0, 1, 0)),
    "hour": (3600.0, (0, 0, 1, 0)),
    "d": (86400.0, (0, 0, 1, 0)),
    "day": (86400.0, (0, 0, 1, 0)),
    "K": (1.0, (0, 0, 0, 1)),
    "W": (1.0, (1, 2, -3, 0)),
    "Pa": (1.0, (1, -1, -2, 0)),
    "hPa": (100.0, (1, -1, -2, 0)),
    "mb": (100.0, (1, -1, -2, 0)),
    "mbar": (100.0, (1, -1, -2, 0)),
    "1": (1.0, (0, 0, 0, 0)),
    "-": (1.0, (0, 0, 0, 0)),
    "fraction": (1.0, (0, 0, 0, 0)),
    "%": (0.01, (0, 0, 0, 0)),
}
_FACTOR = re.compile(r"^\s*(?:10\s*\^\s*\(?\s*([-+]?\d+)\s*\)?|(\d+\.?\d*[eE][-+]?\d+))")
_TOKEN = re.compile(r"^([A-Za-z%]+|1|-)\^?\(?([-+]?\d+)?\)?$")

Parsed = tuple[float, tuple[int, ...]]


def parse(text: str) -> Parsed | None:
    """``(factor to SI, exponents of kg, m, s, K)`` of `text`, or None if not understood."""
    text = str(text).strip().replace("**", "^")
    factor = 1.0
    match = _FACTOR.match(text)
    if match:
        factor = 10.0 ** int(match.group(1)) if match.group(1) else float(match.group(2))
        text = text[match.end() :].strip()
    exponents = [0, 0, 0, 0]
    if not text:
        return factor, tuple(exponents)
    for k, group in enumerate(text.split("/")):
        sign = 1 if k == 0 else -1
        tokens = [t for t in re.split(r"[\s*·]+|(?<=[A-Za-z\d])\.(?=[A-Za-z])", group) if t]
        if not tokens:
            return None
        for token in tokens:
            found = _TOKEN.match(token)
            if found is None or found.group(1) not in _SYMBOLS:
                return None
            power = sign * int(found.group(2) or 1)
            symbol_factor, dims = _SYMBOLS[found.group(1)]
            factor *= symbol_factor**power
            exponents = [e + power * d for e, d in zip(exponents, dims, strict=True)]
    return factor, tuple(exponents)


def scale(given: str, expected: str) -> float | None:
    """The factor from `given` units to `expected` ones (values in `given` × factor are in
    `expected`), or None if either is not understood or their dimensions differ."""
    a, b = parse(given), parse(expected)
    if a is None or b is None or a[1] != b[1]:
        return None
    return a[0] / b[0]


def same(given: str, expected: str) -> bool:
    """True if `given` and `expected` are the same units (to a relative 10⁻⁹ in scale)."""
    factor = scale(given, expected)
    return factor is not None and math.isclose(factor, 1.0, rel_tol=1e-9)
