"""The report's one rule for printing numbers (harness.report.numbers): every figure a reader sees in
report.md, report.html and on a plot's axis. Each switch (exact integer or 4 digits, fixed or
scientific, shared decimals for an interval) at its boundary, with the neighbour on the other side."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.report import numbers as nb


@pytest.mark.parametrize("x, four, three", [
    (None, "-", "-"), (True, "-", "-"), ("7", "-", "-"), (math.nan, "nan", "nan"), (math.inf, "inf", "inf"),
    (-math.inf, "-inf", "-inf"), (0, "0", "0"), (-0.0, "0", "0"), (5, "5", "5"), (-5, "-5", "-5"),
    (999_999, "999,999", "999,999"), (1_000_000, "1.000e+06", "1.00e+06"), (-1_000_000, "-1.000e+06", "-1.00e+06"),
    (1234567, "1.235e+06", "1.23e+06"), (12345.67, "12,350", "12,300"), (0.012345, "0.01235", "0.0123"),
    (0.0001, "0.0001000", "0.000100"), (9.999e-05, "9.999e-05", "1.00e-04"), (-9.999e-05, "-9.999e-05", "-1.00e-04"),
    (999_999.4, "1.000e+06", "1.00e+06"), (-999_999.6, "-1.000e+06", "-1.00e+06"), (999_949.0, "999,900", "1.00e+06"),
    (9.9996, "10.00", "10.0"), (-3.14159, "-3.142", "-3.14"), (3078819961374.3672, "3.079e+12", "3.08e+12"),
    (3.2e-07, "3.200e-07", "3.20e-07"), (np.float32(2.5), "2.500", "2.50"), (np.int64(7), "7", "7"),
    (100.0, "100.0", "100"), (0.1, "0.1000", "0.100"), (1e6 - 1.0, "1.000e+06", "1.00e+06")])
def test_one_number_under_the_rule(x, four, three):
    """Exact integers below 10^6 with separators; else 4 (or 3) significant digits; scientific at and
    beyond 10^6 and below 10^-4, also when rounding carries a value to 10^6; never "0.0000" for a
    value that is not zero; None, bools and text print "-"."""
    assert nb.fmt(x) == four
    assert nb.fmt(x, 3) == three


@pytest.mark.parametrize("x, want", [(0, "+0"), (0.5, "+0.5000"), (-0.5, "-0.5000"), (math.nan, "nan"),
                                     (math.inf, "inf"), (-math.inf, "-inf"), (None, "-"), (2e6, "+2.000e+06")])
def test_a_difference_reads_with_its_sign(x, want):
    """+ on zero and positives, never on nan, inf or a missing value."""
    assert nb.fmt_signed(x) == want


@pytest.mark.parametrize("x, want", [(0, 0), (123.4, 1), (0.05, 5), (12345, 0), (-0.5, 4), (9.99, 3), (10.0, 2)])
def test_decimals_that_keep_four_significant_digits(x, want):
    assert nb.decimals_for(x) == want


@pytest.mark.parametrize("args, want", [
    ((0.12345, 0.12340, 0.12350), ("+0.12345", "+0.12340", "+0.12350")),  # raised until the ends differ
    ((0.25, 0.2499, 0.2501), ("+0.25000", "+0.24990", "+0.25010")),
    ((0.5, 0.1, 0.9), ("+0.5000", "+0.1000", "+0.9000")),
    ((0.5, None, None), ("+0.5000", "-", "-")),
    ((0.5, 0.4, None), ("+0.5000", "+0.4000", "-")),
    ((math.nan, 0.1, 0.2), ("nan", "-", "-")),
    ((0.5, math.nan, 0.9), ("+0.5000", "nan", "+0.9000")),  # a missing end is "nan", never "+nan"
    ((1e-5, math.inf, None), ("+1.000e-05", "inf", "-")),
    ((0, 0, 0), ("+0", "+0", "+0")), ((0, None, 0), ("+0", "-", "+0")),
    ((0.0, -0.5, 0.5), ("+0.0000", "-0.5000", "+0.5000")),
    ((-2.0, -3.0, -1.0), ("-2.000", "-3.000", "-1.000")),
    ((2, 1, 3), ("+2.000", "+1.000", "+3.000")),
    ((12.5, 10, 15), ("+12.50", "+10.00", "+15.00")),
    ((0.003, 0.001, 0.005), ("+0.003000", "+0.001000", "+0.005000")),
    ((0.000012, -0.5, 0.5), ("+0.00001", "-0.50000", "+0.50000")),  # the mean keeps its first digit
    ((5e-05, 0.2, 0.3), ("+0.00005", "+0.20000", "+0.30000")),
    ((0.3, -0.00001, 0.6), ("+0.3000", "+0.0000", "+0.6000")),  # "-0.0000" reads as zero
    ((-0.0001, -0.0003, 0.0002), ("-0.0001000", "-0.0003000", "+0.0002000")),
    ((0.0, -2e-5, 3e-5), ("+0.000e+00", "-2.000e-05", "+3.000e-05")),  # below 10^-4: scientific
    ((2e6, 1.9e6, 2.1e6), ("+2.000e+06", "+1.900e+06", "+2.100e+06")),  # 10^6 and beyond: scientific
    ((2e6, 1999999, 2000001), ("+2.0000000e+06", "+1.9999990e+06", "+2.0000010e+06")),  # digits for the width
    ((3.0, 2.9999999, 3.0000001), ("+3.00000000", "+2.99999990", "+3.00000010")),  # 8 decimals: still fixed
    ((3.0, 2.999999999, 3.000000001), ("+3.0000000000e+00", "+2.9999999990e+00", "+3.0000000010e+00")),  # 10: not
    ((1e10, 1e10 - 1e-3, 1e10 + 1e-3), ("+1.00000000000000e+10", "+9.99999999999900e+09", "+1.00000000000010e+10")),
    ((1e10, 1e10 - 1e-6, 1e10 + 1e-6), ("+1.00000000000000e+10", "+1.00000000000000e+10", "+1.00000000000000e+10")),
    ((-5e-5, None, None), ("-5.000e-05", "-", "-")),
    ((0.5, 0.5, 0.5), ("+0.5000", "+0.5000", "+0.5000")),
])
def test_an_effect_and_its_interval_share_one_precision(args, want):
    """The interval's two ends differ in print (two digits of its width), the mean keeps its first
    digit, and past 8 decimals or outside [10^-4, 10^6) it is scientific with as many digits as the
    width needs, at most 15."""
    assert nb.fmt_effect(*args) == want
    unsigned = tuple(s[1:] if s.startswith("+") else s for s in want)
    assert nb.fmt_effect(*args, signed=False) == unsigned


def test_an_interval_alone():
    """[lo, hi] at the shared precision, the mean joining it when given; a missing end: "-"."""
    assert nb.fmt_ci(0.1, 0.2) == "[+0.1000, +0.2000]"
    assert nb.fmt_ci(0.1, 0.2, signed=False) == "[0.1000, 0.2000]"
    assert nb.fmt_ci(0.12340, 0.12350) == "[+0.12340, +0.12350]"
    assert nb.fmt_ci(0.5, 0.6, mean=0.00012) == "[+0.5000, +0.6000]"
    assert nb.fmt_ci(0.5, 0.6, mean=0.000012) == "[+0.50000, +0.60000]"
    assert nb.fmt_ci(None, 0.2) == "-" and nb.fmt_ci(0.1, math.nan) == "-" and nb.fmt_ci(math.inf, 0.2) == "-"


@pytest.mark.parametrize("x, want", [(0.95, "95%"), (0.99375, "99.38%"), (1, "100%"), (0.123456, "12.35%"),
                                     (None, "-"), (math.nan, "nan")])
def test_a_confidence_level_as_a_percentage(x, want):
    assert nb.fmt_level(x) == want


@pytest.mark.parametrize("x, want", [(0.000123, "$0.0001230"), (1234.5, "$1,234"), (2, "$2.000"), (None, "-"),
                                     (math.nan, "nan"), (3e6, "$3.000e+06"), (0.00001, "$1.000e-05")])
def test_dollars_keep_their_digits(x, want):
    """A cost per correct answer of $0.000123 is never "$0.00"."""
    assert nb.fmt_usd(x) == want


@pytest.mark.parametrize("x, want", [
    (None, ""), (math.nan, ""), (math.inf, ""), (0, "0"), (0.0, "0"), (1e6, "1e6"), (999999.0, "1e6"),
    (999_499.0, "999,000"), (123456, "123,000"), (12345.6, "12,300"), (0.5, "0.5"), (0.25, "0.25"), (1.0, "1"),
    (20, "20"), (0.00012345, "0.000123"), (1e-4, "0.0001"), (9.99e-5, "9.99e-5"), (-1500, "-1,500"),
    (2.5e-7, "2.5e-7"), (1.05e6, "1.05e6"), (-1.05e6, "-1.05e6"), (150000, "150,000"), (3e12, "3e12"),
    (1.5, "1.5"), (1234.0, "1,230")])
def test_a_tick_label(x, want):
    """3 significant digits, trailing zeros dropped; ``1.2e5``-style beyond 10^6 and below 10^-4, never
    mathtext; nothing at all for a missing value."""
    assert nb.tick(x) == want
    assert nb.tick(x, 3) == want  # matplotlib passes the tick's position


@pytest.mark.parametrize("metric, want", [
    ("acc", "fraction correct"), ("acc,none", "fraction correct"), ("acc_norm", "fraction correct"),
    ("exact_match,strict-match", "fraction correct"), ("bits_per_byte", "bits/byte"), ("bits", "bits/fact"),
    ("f1", "F1, 0-1"), ("mcc", "MCC, -1-1"), ("loss", "nats/token"), ("word_perplexity,none", "per word"),
    ("byte_perplexity", "per byte"), ("perplexity", "per token"), ("foo_perplexity", "per word"),
    ("bleu", "BLEU"), ("ter", "TER"), ("xyz,flt", "xyz")])
def test_every_metric_reads_with_its_unit(metric, want):
    """The unit beside a column (before lm-eval's filter suffix); an unknown metric is its own name."""
    assert nb.unit(metric) == want
    assert nb.with_unit("score", metric) == f"score ({want})"


def test_an_interval_alone_takes_its_midpoints_precision():
    """Without a mean the midpoint's first digit sets the precision: [-0.5, 0.500004] has its
    midpoint at 2e-6, so six decimals show it (a third of it would ask for seven)."""
    assert nb.fmt_ci(-0.5, 0.500004) == "[-0.500000, +0.500004]"
    assert nb.fmt_ci(-0.5, 0.50001) == "[-0.500000, +0.500010]"


def test_one_significant_digit_and_a_signed_number_at_three():
    assert nb.fmt(2500000.0, 1) == "2e+06"
    assert nb.fmt_signed(0.123456, 3) == "+0.123" and nb.fmt_signed(0.123456) == "+0.1235"


def test_the_switches_to_scientific_at_exactly_ten_to_the_six_and_fixed_at_ten_to_the_minus_four():
    assert nb.fmt(1_000_000.0) == "1.000e+06"
    assert nb.fmt_effect(1e6) == ("+1.000e+06", "-", "-")
    assert nb.fmt_effect(1e-4) == ("+0.0001000", "-", "-")


def test_an_effect_without_an_interval_keeps_the_rules_digits_and_thousands_separators():
    assert nb.fmt_effect(1234.5) == ("+1,234", "-", "-")
    assert nb.fmt_effect(1234.5, 1000.0, 1500.0) == ("+1,234", "+1,000", "+1,500")
    assert nb.fmt_effect(0.123456, sig=3) == ("+0.123", "-", "-")
    assert nb.fmt_ci(-0.5, 0.500003) == "[-0.500000, +0.500003]"
