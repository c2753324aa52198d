"""Issue 11, item 4: the experiment report compares both arms over the same window — the last N
seconds, never reaching back past the traffic-policy change — and its observed share is the share
in that window (53/47 under a 50/50 policy, not 73/27 from the minutes before it). Clock injected."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from reranker.clock import FakeClock
from reranker.control.requestlog import RequestRecord, insert_requests
from reranker.control.requeststats import version_stats
from reranker.control.store import Store
from reranker.service.experiments import PolicyEpoch, comparison_window, series_bucket_s
from ui.experiments import window_note

T0 = 1_700_000_000.0  # 22:13:20 UTC


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    opened = Store(tmp_path / "reranker.sqlite3", clock)
    yield opened
    opened.close()


def served(at: float, counts: dict[str, int], span_s: float) -> list[RequestRecord]:
    """counts[version] requests spread evenly over [at, at + span_s)."""
    records = []
    for version, n in counts.items():
        records += [RequestRecord(at=at + i * span_s / n, request_id=f"{version}-{at}-{i}", version=version,
                                  n_documents=2, latency_ms=10.0, status=200) for i in range(n)]
    return records


def test_the_window_starts_at_the_policy_change_when_it_is_recent(clock: FakeClock) -> None:
    changed = clock.now()
    clock.advance(150)
    window = comparison_window(clock.now(), 600, changed)
    assert (window.start, window.end, window.seconds) == (changed, clock.now(), 150)
    assert window.since_policy_change and window.requested_s == 600
    clock.advance(600)  # the change is older than the window: the last 600 s
    window = comparison_window(clock.now(), 600, changed)
    assert window.start == clock.now() - 600 and window.seconds == 600 and not window.since_policy_change
    never = comparison_window(clock.now(), 600, None)
    assert never.start == clock.now() - 600 and not never.since_policy_change
    future = comparison_window(clock.now(), 600, clock.now() + 5)  # a clock step backwards
    assert future.start == clock.now() - 600
    assert window.to_dict()["seconds"] == 600 and window.to_dict()["policy_changed_at"] == changed
    assert series_bucket_s(600) == 10 and series_bucket_s(60) == 5


def test_observed_share_covers_only_the_window_of_the_policy_in_force(store: Store, clock: FakeClock) -> None:
    # 450 s of a 100/0 policy (mini-v1 only) with a trickle to mini-v2 from an earlier split,
    # then a 50/50 policy for the last 150 s.
    start = clock.now()
    insert_requests(store, served(start, {"mini-v1": 239, "mini-v2": 61}, 450))
    clock.advance(450)
    changed = clock.now()
    insert_requests(store, served(changed, {"mini-v1": 53, "mini-v2": 47}, 150))
    clock.advance(150)
    naive = {s.version: round(s.share * 100) for s in version_stats(store, clock.now() - 600)}
    assert naive == {"mini-v1": 73, "mini-v2": 27}  # what the page showed before
    window = comparison_window(clock.now(), 600, changed)
    stats = {s.version: s for s in version_stats(store, window.start, window.end)}
    assert {v: round(s.share * 100) for v, s in stats.items()} == {"mini-v1": 53, "mini-v2": 47}
    assert {v: s.count for v, s in stats.items()} == {"mini-v1": 53, "mini-v2": 47}


def test_the_page_names_the_window_and_the_policy_change() -> None:
    window = comparison_window(T0 + 150, 600, T0).to_dict()
    note = window_note({"window": window, "window_start": T0, "since_policy_change": True})
    assert "last 150 s" in note and "since the traffic policy changed at 22:13:20 UTC" in note
    older = window_note({"window": comparison_window(T0 + 3600, 600, T0).to_dict(), "window_start": T0 + 3000})
    assert "last 10 min" in older and "policy" not in older


def test_a_ramp_is_one_policy_but_a_later_change_starts_a_new_window(clock: FakeClock) -> None:
    epoch = PolicyEpoch(merge_s=5.0)
    assert epoch.since is None
    epoch.changed(clock.now())  # the operator's 50/50
    started = clock.now()
    clock.advance(30)
    epoch.changed(clock.now(), stepwise=True)  # a rollout's ramp begins...
    ramp = clock.now()
    for _ in range(40):  # ...and moves the share every quarter second
        clock.advance(0.25)
        epoch.changed(clock.now(), stepwise=True)
    assert started < ramp and epoch.since == ramp
    clock.advance(60)
    epoch.changed(clock.now(), stepwise=True)  # a step after a quiet minute: a new policy
    assert epoch.since == clock.now()
    clock.advance(1)
    epoch.changed(clock.now())  # the operator's change a second later: a new policy too
    assert epoch.since == clock.now()
    window = comparison_window(clock.now() + 10, 600, epoch.since)
    assert window.seconds == 10 and window.since_policy_change
