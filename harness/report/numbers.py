"""The report's one rule for printing a number: report.md, report.html and the plots' tick labels.

- **4 significant digits** (3 for tick labels, which sit side by side), trailing zeros kept only
  where they carry a digit: ``1.235``, ``0.01234``, ``1,235``, ``12,350``;
- **scientific notation** at and beyond 10^6 in magnitude (``3.079e+12``) and below 10^-4
  (``3.2e-07``): never ``3078819961374.3672``, never ``0.0000`` for a value that is not zero;
- an **effect with an interval** (:func:`fmt_effect`) is printed with one shared number of
  decimals, raised until the interval's two ends differ in print (a CI narrower than 4 significant
  digits would otherwise read ``[0.1235, 0.1235]``); beyond :data:`MAX_DECIMALS` decimals it switches
  to scientific notation with as many digits as the width needs (up to 15);
- signs: :func:`fmt_signed` puts ``+`` on non-negative effects, as differences read.

Counts that are exact integers (documents, seeds, tokens below 10^6) print exactly, with
thousands separators. Every helper takes ``None``/NaN and returns ``"-"``/``"nan"``.
"""

from __future__ import annotations

import math
import numbers

SIG = 4
#: at and beyond this magnitude: scientific notation
SCI_HIGH = 1e6
#: below this magnitude (and not zero): scientific notation
SCI_LOW = 1e-4
#: the most decimals an effect and its CI are printed with in fixed notation
MAX_DECIMALS = 8


def _bad(x) -> str | None:
    if x is None or isinstance(x, bool) or not isinstance(x, numbers.Real):  # numpy scalars included
        return "-"
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return None


def _sci(x: float, sig: int) -> str:
    return f"{x:.{max(0, sig - 1)}e}"


def decimals_for(x: float, sig: int = SIG) -> int:
    """Decimals that show ``x`` (|x| in [SCI_LOW, SCI_HIGH)) with ``sig`` significant digits."""
    if x == 0:
        return 0
    return max(0, sig - 1 - math.floor(math.log10(abs(x))))


def fmt(x, sig: int = SIG) -> str:
    """One number under the rule (see the module docstring)."""
    bad = _bad(x)
    if bad is not None:
        return bad
    if isinstance(x, numbers.Integral) and abs(x) < SCI_HIGH:
        return f"{int(x):,}"
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= SCI_HIGH or abs(x) < SCI_LOW:
        return _sci(x, sig)
    # round to sig digits first (9.9996 -> 10.00), then print the decimals that keeps
    rounded = float(f"{x:.{sig - 1}e}")
    if abs(rounded) >= SCI_HIGH:
        return _sci(x, sig)
    return f"{rounded:,.{decimals_for(rounded, sig)}f}"


def fmt_signed(x, sig: int = SIG) -> str:
    s = fmt(x, sig)
    return s if s.startswith(("-", "n", "i")) else "+" + s


def _fixed(x: float, decimals: int, signed: bool) -> str:
    s = f"{x:,.{decimals}f}"
    if float(s.replace(",", "")) == 0:  # "-0.000" -> "0.000"
        s = s.lstrip("-")
    return ("+" + s) if signed and not s.startswith("-") else s


def fmt_effect(mean, lo=None, hi=None, signed: bool = True, sig: int = SIG) -> tuple[str, str, str]:
    """(mean, lo, hi) printed with one shared precision that keeps the interval's width visible.

    Fixed notation when the largest magnitude is in [SCI_LOW, SCI_HIGH), else scientific with
    enough significant digits that lo and hi differ in print. ``lo``/``hi`` None: "-"; NaN: "nan".
    """
    bad = _bad(mean)
    if bad is not None:
        return bad, "-", "-"
    ends = [v for v in (lo, hi) if _bad(v) is None]
    big = max(abs(v) for v in [mean, *ends])
    width = (hi - lo) if len(ends) == 2 else 0.0
    one = (lambda v: fmt_signed(v, sig)) if signed else (lambda v: fmt(v, sig))
    if big == 0:
        return tuple(one(0) if v is not None else "-" for v in (mean, lo, hi))  # type: ignore[return-value]
    decimals = 0
    if SCI_LOW <= big < SCI_HIGH:
        decimals = decimals_for(big, sig)
        if width > 0:
            decimals = max(decimals, -math.floor(math.log10(width)) + 1)  # two digits of the width
        if mean != 0:
            decimals = max(decimals, -math.floor(math.log10(abs(mean))))  # the mean's first digit
    if big >= SCI_HIGH or big < SCI_LOW or decimals > MAX_DECIMALS:  # scientific, as many digits as the width needs
        digits = sig
        if width > 0:  # enough significant digits (of the largest) that the width shows
            digits = max(sig, math.floor(math.log10(big)) - math.floor(math.log10(width)) + 2)
        digits = min(digits, 15)
        f = lambda v: ("+" if signed and v >= 0 else "") + _sci(v, digits)  # noqa: E731
    else:
        f = lambda v: _fixed(v, decimals, signed)  # noqa: E731
    return f(mean), _end(lo, f), _end(hi, f)


def _end(v, f) -> str:
    """One end of an interval: "-" when missing, "nan"/"inf" as they are (never "+nan"), else ``f(v)``."""
    return "-" if v is None else _bad(v) or f(v)


def fmt_ci(lo, hi, signed: bool = True, mean=None) -> str:
    """"[lo, hi]" under :func:`fmt_effect`'s shared precision (``mean`` joins it when given)."""
    if _bad(lo) is not None or _bad(hi) is not None:
        return "-"
    _, a, b = fmt_effect(mean if mean is not None else (lo + hi) / 2, lo, hi, signed)
    return f"[{a}, {b}]"


def fmt_level(level) -> str:
    """A confidence level as a percentage: 0.95 -> "95%", 0.99375 -> "99.38%"."""
    bad = _bad(level)
    return bad if bad is not None else f"{100 * float(level):.4g}%"


def fmt_usd(x) -> str:
    """Dollars: under the number rule, with a $ sign; small amounts keep their digits ($0.000123)."""
    bad = _bad(x)
    return bad if bad is not None else "$" + fmt(float(x))


def tick(x, _pos=None) -> str:
    """A plot tick label: 3 significant digits, the same notation switches as the tables."""
    bad = _bad(x)
    if bad is not None:
        return ""
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= SCI_HIGH or ax < SCI_LOW:
        m, e = f"{x:.2e}".split("e")
        m = m.rstrip("0").rstrip(".")
        return f"{m}e{int(e)}"
    rounded = float(f"{x:.2e}")
    if abs(rounded) >= SCI_HIGH:
        return tick(rounded)
    s = f"{rounded:,.{decimals_for(rounded, 3)}f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


# ---- units ------------------------------------------------------------------------------------
#: a metric's unit, by its base name (before lm-eval's ",filter" suffix)
UNITS = {"bits_per_byte": "bits/byte", "bits": "bits/fact", "acc": "fraction correct",
         "acc_norm": "fraction correct", "exact_match": "fraction correct", "f1": "F1, 0-1", "mcc": "MCC, -1-1",
         "loss": "nats/token", "word_perplexity": "per word", "byte_perplexity": "per byte",
         "perplexity": "per token", "bleu": "BLEU", "ter": "TER"}


def unit(metric: str) -> str:
    """The unit of a metric (``bits_per_byte`` -> ``bits/byte``); the metric name itself when unknown."""
    base = str(metric).split(",")[0]
    return UNITS.get(base, "per word" if base.endswith("perplexity") else base)


def with_unit(name: str, metric: str) -> str:
    """A column header: ``name (unit)``."""
    return f"{name} ({unit(metric)})"
