"""Reading a perturbation size (ε or a step) as the user writes it, in zsrbench's unit of 1/255.

Accepted spellings, all meaning the same ε:

* ``4`` or ``4.0`` — a number of at least 1 is in units of 1/255 (zsrbench's unit, as in the papers' tables);
* ``4/255`` — an explicit fraction of the pixel range (any denominator: ``1/510`` is 0.5/255);
* ``0.0157`` — a number below 1 is a fraction of the pixel range [0, 1]. Such decimals are usually a rounded
  k/255, so one within 2% of a whole k/255 is read as exactly k/255 (``0.0157`` → 4/255, ``0.031`` → 8/255);
  write ``0.5/255`` for a fraction of the unit. Decimals from 0.1 to 1 are refused as ambiguous (is ``0.5`` half
  of 1/255 or 127.5/255?).

"""

from __future__ import annotations

from zsrbench.errors import ZsrError

AMBIGUOUS = 0.1  # decimals in [0.1, 1) could be either unit: refused with both readings
SNAP_REL = 0.02  # a pixel-range decimal this close (relative) to a whole k/255 is read as k/255


def parse_eps(value: str | float | int | None, option: str = "--eps") -> float | None:
    """``value`` in units of 1/255 (``None`` stays ``None``); a ZsrError naming ``option`` when unreadable.

    Only the spelling is checked here: the range (finite, positive, at most 255/255) is checked where the value
    is used, with the bounds that apply there (an attack's ε, a training ε, a step)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ZsrError(_message(value, option))
    text = str(value).strip().replace(" ", "")
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            units = float(num) / float(den) * 255.0
            if float(den) == 255.0:
                units = float(num)  # exact: no round trip through the pixel scale
            return units
        x = float(text)
    except (ValueError, ZeroDivisionError):
        raise ZsrError(_message(value, option)) from None
    if AMBIGUOUS <= x < 1:
        raise ZsrError(f"{option} {value!r} is ambiguous: a decimal below 1 is read as a fraction of the pixel "
                       f"range, which would make it {x * 255:g}/255. Write {x:g}/255 for a fraction of zsrbench's "
                       f"unit, or {x * 255:g}/255 if you meant that much.")
    if 0 < x < 1:
        units = x * 255.0
        k = round(units)
        if k >= 1 and abs(units - k) <= SNAP_REL * k:
            units = float(k)
        return units
    return x


def eps_text(units: float) -> str:
    """``4.0`` → ``"4/255"`` (the form results and tables show)."""
    return f"{units:g}/255"


def _message(given: object, option: str) -> str:
    return (f"{option} takes a size in units of 1/255 (4), as a fraction of the pixel range (4/255) or as a "
            f"decimal of the pixel range (0.0157); got {given!r}.")


def normalise_eps(text: str | None) -> str | None:
    """``"1"``, ``"1/255"``, ``"1.0"``, ``"0.0039"`` -> ``"1/255"`` (a table's ``--eps``: any spelling of one ε)."""
    if text is None:
        return None
    import math

    units = parse_eps(text)
    if units is None or not math.isfinite(units) or units < 0:
        raise ZsrError(f"--eps takes a finite, non-negative ε such as 1, 4/255 or 0.0157; got {text!r}.")
    return eps_text(units)
