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
