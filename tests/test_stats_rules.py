"""The small-sample statistics behind every verdict (harness.report.stats): t quantiles, intervals
over seeds, what a run could detect, how many seeds or documents it would take, Holm's step-down.
Each figure against a known value (scipy's, to 6 digits) and each decision at its boundary."""

from __future__ import annotations

import math

import pytest

from harness.report import stats


@pytest.mark.parametrize("p, df, want", [(0.975, 1, 12.70620474), (0.975, 2, 4.30265273), (0.975, 4, 2.77644511),
                                         (0.975, 30, 2.04227246), (0.8, 1, 1.37638192), (0.8, 4, 0.94096458),
                                         (0.975, 0.5, 164.55767348), (0.999999, 3, 103.29946778), (0.5, 7, 0.0)])
def test_t_quantiles_match_scipy(p, df, want):
    """The interval half-widths of every seed verdict: t(0.975, 1) = 12.706 and so on, far tails too."""
    assert stats.t_ppf(p, df) == pytest.approx(want, rel=1e-6, abs=1e-9)
    assert stats.t_ppf(1 - p, df) == pytest.approx(-want, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("t, df, want", [(1.0, 3, 0.80449889), (-2.0, 5, 0.05096974), (0.3, 0.7, 0.58538241),
                                         (0.0, 4, 0.5), (1e9, 2, 1.0), (-1e9, 2, 0.0)])
def test_t_cdf_matches_scipy(t, df, want):
    assert stats.t_cdf(t, df) == pytest.approx(want, rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("p, df", [(0.0, 3), (1.0, 3), (-0.1, 3), (1.5, 3), (0.9, 0), (0.9, -1)])
def test_a_t_quantile_outside_its_domain_is_an_error_naming_the_value(p, df):
    with pytest.raises(ValueError, match=r"^t_ppf: (p must be in \(0, 1\)|df must be positive), got "):
        stats.t_ppf(p, df)


def test_the_incomplete_beta_ends_and_both_sides_of_its_switch():
    """0 at x <= 0, 1 at x >= 1; the two branches (x below or above (a+1)/(a+b+2)) agree with scipy."""
    assert stats._betainc(2.0, 3.0, 0.0) == 0.0 and stats._betainc(2.0, 3.0, -1.0) == 0.0
    assert stats._betainc(2.0, 3.0, 1.0) == 1.0 and stats._betainc(2.0, 3.0, 2.0) == 1.0
    assert stats._betainc(2.0, 3.0, 0.2) == pytest.approx(0.1808, rel=1e-9)
    assert stats._betainc(2.0, 3.0, 0.8) == pytest.approx(0.9728, rel=1e-9)
    assert stats._betainc(0.5, 0.5, 0.5) == pytest.approx(0.5, rel=1e-9)


def test_a_seed_interval_by_hand():
    """Four seeds 0.1, 0.3, 0.2, 0.5: mean 0.275, sd 0.17078, 95% t-interval [0.003247, 0.546753]; 90% narrower."""
    ci = stats.t_interval([0.1, 0.3, 0.2, 0.5])
    assert (ci.mean, ci.n, ci.level) == (pytest.approx(0.275), 4, 0.95)
    assert ci.sd == pytest.approx(0.1707825128, rel=1e-9)
    assert (ci.lo, ci.hi) == (pytest.approx(0.0032469116, rel=1e-6), pytest.approx(0.5467530884, rel=1e-7))
    assert ci.se == pytest.approx(0.1707825128 / 2, rel=1e-9)
    ninety = stats.t_interval([0.1, 0.3, 0.2, 0.5], level=0.9)
    assert (ninety.lo, ninety.hi, ninety.level) == (pytest.approx(0.0740433396, rel=1e-6),
                                                    pytest.approx(0.4759566604, rel=1e-7), 0.9)


def test_one_seed_has_no_interval_and_two_have_one():
    assert stats.t_interval([0.3]) is None and stats.t_interval([]) is None
    two = stats.t_interval([1, 3])
    assert two.mean == 2.0 and two.sd == pytest.approx(math.sqrt(2)) and two.hi - two.lo == pytest.approx(
        2 * 12.70620474 * 1.0, rel=1e-6)


@pytest.mark.parametrize("lo, hi, significant", [(0.01, 0.2, True), (-0.2, -0.01, True), (0.0, 0.2, False),
                                                 (-0.2, 0.0, False), (-0.1, 0.1, False)])
def test_an_interval_is_significant_only_when_it_excludes_zero(lo, hi, significant):
    """An interval touching zero is not significant: the verdict stays inconclusive."""
    assert stats.SeedCI(0.0, lo, hi, 3, 1.0).significant is significant


def test_what_n_seeds_could_detect():
    """MDE = (t(1 - a/2) + t(power)) sd / sqrt(n) on n - 1 degrees of freedom; infinite for one seed."""
    assert stats.mde_seeds(1.0, 1) == math.inf and stats.mde_seeds(1.0, 0) == math.inf
    assert stats.mde_seeds(1.0, 2) == pytest.approx((12.70620474 + 1.37638192) / math.sqrt(2), rel=1e-6)
    assert stats.mde_seeds(2.0, 5, alpha=0.05, power=0.8) == pytest.approx((2.77644511 + 0.94096458) * 2 / math.sqrt(5),
                                                                          rel=1e-6)
    assert stats.mde_seeds(1.0, 5, alpha=0.1) < stats.mde_seeds(1.0, 5) < stats.mde_seeds(1.0, 5, power=0.9)


def _brute_seeds(effect, sd, limit=10_000):
    return next((n for n in range(2, limit + 1) if stats.mde_seeds(sd, n) <= abs(effect)), None)


@pytest.mark.parametrize("effect, sd", [(0.5, 1.0), (-0.5, 1.0), (0.3, 1.0), (1.0, 0.3), (2.0, 1.0), (0.04, 0.1),
                                        (5.0, 1.0), (0.7, 1.0)])
def test_seeds_needed_is_the_least_n_whose_mde_reaches_the_effect(effect, sd):
    """The smallest seed count that detects the effect, either sign (checked against a linear search)."""
    assert stats.seeds_needed(effect, sd) == _brute_seeds(effect, sd)


def test_seeds_needed_at_its_boundaries():
    """An effect exactly at n seeds' MDE needs n; a hair more than it also n, a hair less n + 1.
    No effect, NaN or infinite: no answer; zero sd: two seeds; beyond the limit: no answer."""
    at = stats.mde_seeds(1.0, 9)
    assert stats.seeds_needed(at, 1.0) == 9
    assert stats.seeds_needed(at * (1 - 1e-9), 1.0) == 10
    assert stats.seeds_needed(stats.mde_seeds(1.0, 2), 1.0) == 2
    assert stats.seeds_needed(stats.mde_seeds(1.0, 4), 1.0) == 4 and stats.seeds_needed(stats.mde_seeds(1.0, 3), 1.0) == 3
    for effect in (0.0, math.nan, math.inf, -math.inf):
        assert stats.seeds_needed(effect, 1.0) is None
    assert stats.seeds_needed(0.001, 0.0) == 2
    assert stats.seeds_needed(0.01, 1.0, limit=100) is None  # needs ~80,000
    need = stats.seeds_needed(0.3, 1.0)
    assert stats.seeds_needed(0.3, 1.0, limit=need) == need and stats.seeds_needed(0.3, 1.0, limit=need - 1) is None


def test_seeds_needed_just_past_a_doubling_limit():
    """The search doubles to 4, 8, 16...: an answer over the limit is None even when the doubling
    overshoots it (limit 50 for an effect needing 60), and exactly at a power of two is kept."""
    sixty = stats.mde_seeds(1.0, 60)
    assert stats.seeds_needed(sixty, 1.0, limit=50) is None
    assert stats.seeds_needed(sixty, 1.0, limit=60) == 60
    assert stats.seeds_needed(stats.mde_seeds(1.0, 64), 1.0, limit=64) == 64
    assert stats.seeds_needed(stats.mde_seeds(1.0, 33), 1.0, limit=32) is None


def test_within_seed_detectable_difference_from_the_bootstrap_width():
    """A 95% interval 0.0392 wide is a standard error of 0.01 (z = 1.95996); MDE = (1.95996 + 0.84162) se."""
    se = stats.se_from_interval(-0.0196, 0.0196)
    assert se == pytest.approx(0.0392 / (2 * 1.959963985), rel=1e-9)
    assert stats.se_from_interval(0.0, 1.0, level=0.9) == pytest.approx(1 / (2 * 1.644853627), rel=1e-9)
    assert stats.mde_bootstrap(-0.0196, 0.0196) == pytest.approx((1.959963985 + 0.841621234) * se, rel=1e-9)
    assert stats.mde_bootstrap(0, 1, alpha=0.1, power=0.9) == pytest.approx((1.644853627 + 1.281551566) / (2 * 1.959963985),
                                                                           rel=1e-9)


def test_documents_needed_scale_as_the_square_of_mde_over_effect():
    """100 documents detecting 0.2: an effect half that needs 4x the documents, 400; an effect already
    detectable needs no more than there are; none for no effect or no documents."""
    mde = stats.mde_bootstrap(-0.1, 0.1)
    assert stats.docs_needed(mde, 100, -0.1, 0.1) == 100
    assert stats.docs_needed(mde / 2, 100, -0.1, 0.1) == 400
    assert stats.docs_needed(-mde / 2, 100, -0.1, 0.1) == 400
    assert stats.docs_needed(mde * 3, 100, -0.1, 0.1) == 100
    assert stats.docs_needed(mde / 1.5, 100, -0.1, 0.1) == 225
    assert stats.docs_needed(mde / 1.7, 10, -0.1, 0.1) == 29  # ceil(28.9)
    assert stats.docs_needed(0.0, 100, -0.1, 0.1) is None and stats.docs_needed(0.1, 0, -0.1, 0.1) is None
    assert stats.docs_needed(mde, 100, -0.1, 0.1, level=0.9) > 100 and stats.docs_needed(mde, 100, -0.1, 0.1, power=0.9) > 100


def test_holm_rejects_step_by_step_and_stops_at_the_first_that_fails():
    """p = 0.01, 0.04, 0.03, 0.005 at alpha 0.05: steps 0.0125, 0.01667, 0.025, 0.05 — 0.005 and 0.01 are
    rejected, 0.03 fails its step 0.025 and from there on all carry that step's level 0.975."""
    out = stats.holm_levels([0.01, 0.04, 0.03, 0.005])
    assert [r for _, r in out] == [True, False, False, True]
    assert [lvl for lvl, _ in out] == pytest.approx([1 - 0.05 / 3, 0.975, 0.975, 1 - 0.05 / 4])


def test_holm_at_the_boundary_and_with_missing_p_values():
    """A p equal to its step is rejected; a hair above is not. None and NaN count as 1; ties keep order."""
    assert stats.holm_levels([0.025, 0.05]) == [(pytest.approx(0.975), True), (pytest.approx(0.95), True)]
    assert [r for _, r in stats.holm_levels([0.0250001, 0.05])] == [False, False]
    assert [r for _, r in stats.holm_levels([None, 0.001, math.nan])] == [False, True, False]
    assert stats.holm_levels([0.01, 0.01], alpha=0.02) == [(pytest.approx(0.99), True), (pytest.approx(0.98), True)]
    assert stats.holm_levels([]) == []
    assert stats.holm_levels([0.2], alpha=0.1) == [(pytest.approx(0.9), False)]


def test_holm_adjusted_p_values():
    """min(1, (m - r + 1) p) made monotone over the ranks: 0.01, 0.04, 0.03, 0.005 -> 0.03, 0.06, 0.06, 0.02."""
    assert stats.holm_adjusted_p([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm_adjusted_p([0.5, 0.6, None, math.inf]) == pytest.approx([1.0, 1.0, 1.0, 1.0])
    assert stats.holm_adjusted_p([0.3, 0.01]) == pytest.approx([0.3, 0.02])


@pytest.mark.parametrize("stat, df, want", [(1.959963985, None, 0.05), (-1.959963985, None, 0.05), (0.0, None, 1.0),
                                            (2.77644511, 4, 0.05), (-2.77644511, 4, 0.05), (math.inf, 3, 0.0),
                                            (-math.inf, None, 0.0)])
def test_two_sided_p_values(stat, df, want):
    """Normal without degrees of freedom, t with them; an infinite statistic (zero spread) has p 0."""
    assert stats.two_sided_p(stat, df) == pytest.approx(want, rel=1e-6, abs=1e-12)


def test_the_two_sided_quantile_is_normal_without_df_and_t_with():
    assert stats.quantile(0.95, None) == pytest.approx(1.959963985, rel=1e-9)
    assert stats.quantile(0.95, 4) == pytest.approx(2.77644511, rel=1e-6)
    assert stats.quantile(0.9, 4) == pytest.approx(2.13184679, rel=1e-6)


def test_seeds_needed_at_a_lower_power_are_fewer():
    """Detecting 0.5 against a per-seed sd of 1: 34 seeds at 80% power, 18 at 50%."""
    assert stats.seeds_needed(0.5, 1.0) == 34
    assert stats.seeds_needed(0.5, 1.0, power=0.5) == 18


def test_one_document_is_enough_to_scale_from_and_none_is_not():
    assert stats.docs_needed(0.1, 1, -0.5, 0.7) == 74
    assert stats.docs_needed(0.1, 0, -0.5, 0.7) is None
