"""The one percentile, and the one rank test, that gates, the Experiments tab and /metrics share.

Latency (everywhere): the wall-clock time the service spends on a request, from its arrival
(before media decoding) to its answer being ready, in milliseconds. Percentiles: linear
interpolation between closest ranks (NumPy's default), over successful requests.
The rollout's latency gate applies the same clock to paired replays: the same request scored on
both versions in isolated forward passes of the background lane (model time per pair).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) of ascending values, linearly interpolated; None when empty."""
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def median(values: Sequence[float]) -> float | None:
    return percentile(sorted(values), 50)


@dataclass(frozen=True)
class RankTest:
    u: float  # Mann-Whitney U of the first sample
    z: float
    p_greater: float  # one-sided p-value of "the first sample tends to be larger"


def mann_whitney_greater(first: Sequence[float], second: Sequence[float]) -> RankTest:
    """Mann-Whitney U test, one-sided (first > second), normal approximation with tie and
    continuity correction (as Kayenta and Flagger use it). p = 1 when either sample is empty."""
    n1, n2 = len(first), len(second)
    if n1 == 0 or n2 == 0:
        return RankTest(0.0, 0.0, 1.0)
    labelled = sorted([(v, 0) for v in first] + [(v, 1) for v in second])
    ranks = [0.0] * len(labelled)
    tie_term = 0.0
    i = 0
    while i < len(labelled):
        j = i
        while j + 1 < len(labelled) and labelled[j + 1][0] == labelled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        tie_term += t**3 - t
        i = j + 1
    rank_sum = sum(r for r, (_, group) in zip(ranks, labelled) if group == 0)
    u = rank_sum - n1 * (n1 + 1) / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1)))
    if variance <= 0:
        return RankTest(u, 0.0, 1.0)
    z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(variance)
    return RankTest(u, z, 0.5 * math.erfc(z / math.sqrt(2)))


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_greater(errors_a: int, runs_a: int, errors_b: int, runs_b: int) -> float:
    """One-sided Fisher exact test: p-value of "sample a's error proportion is greater than b's",
    i.e. P(X >= errors_a) for X hypergeometric with the table's margins (as
    `scipy.stats.fisher_exact([[ea, ra - ea], [eb, rb - eb]], alternative="greater")`).
    p = 1 when either sample is empty or nothing failed."""
    _check_counts(errors_a, runs_a)
    _check_counts(errors_b, runs_b)
    total, failures = runs_a + runs_b, errors_a + errors_b
    if runs_a == 0 or runs_b == 0 or failures == 0:
        return 1.0
    denominator = _log_choose(total, runs_a)
    tail = sum(math.exp(_log_choose(failures, x) + _log_choose(total - failures, runs_a - x) - denominator)
               for x in range(errors_a, min(failures, runs_a) + 1))
    return min(1.0, tail)


def binomial_greater(errors: int, runs: int, rate: float) -> float:
    """One-sided exact binomial test: p-value of "the error rate is greater than `rate`",
    P(X >= errors) for X ~ Binomial(runs, rate). Used when there is no baseline to compare with."""
    _check_counts(errors, runs)
    if errors == 0:
        return 1.0
    if rate <= 0.0:
        return 0.0
    if rate >= 1.0:
        return 1.0
    log_p, log_q = math.log(rate), math.log1p(-rate)
    tail = sum(math.exp(_log_choose(runs, x) + x * log_p + (runs - x) * log_q) for x in range(errors, runs + 1))
    return min(1.0, tail)


def _check_counts(errors: int, runs: int) -> None:
    if not 0 <= errors <= runs:
        raise ValueError(f"error count must be in [0, runs={runs}], got {errors}")


@dataclass(frozen=True)
class SlowerTest:
    """Is the first sample slower than the second by more than a minimum effect, significantly?"""

    first_median: float
    second_median: float
    slower_pct: float  # first's median vs second's, in % (+20.0 = 20 % slower)
    p_greater: float  # one-sided Mann-Whitney U
    min_effect_pct: float
    alpha: float

    @property
    def slower(self) -> bool:
        """Both: the median is slower by more than the minimum effect AND the test says so at alpha."""
        return self.p_greater < self.alpha and self.slower_pct > self.min_effect_pct


def slower_test(first: Sequence[float], second: Sequence[float], min_effect_pct: float, alpha: float) -> SlowerTest:
    """The one latency decision rule, shared by the rollout's latency gate and the Experiments tab:
    a one-sided Mann-Whitney U test plus a minimum effect on the medians (Kayenta, Flagger)."""
    first_median, second_median = median(first) or 0.0, median(second) or 0.0
    if second_median > 0:
        slower = (first_median / second_median - 1.0) * 100.0
    else:
        slower = math.inf if first_median > 0 else 0.0
    return SlowerTest(first_median, second_median, slower, mann_whitney_greater(first, second).p_greater,
                      min_effect_pct, alpha)
