import threading
import time

import pytest

from reranker.clock import FakeClock
from reranker.control.requestlog import DAY_S, RequestLogWriter, RequestRecord, count_requests, recent_requests
from reranker.control.requeststats import (
    SeriesPoint,
    ShadowStats,
    latency_series,
    percentile,
    shadow_stats,
    version_stats,
)
from reranker.control.store import Store
from reranker.errors import InputError

T0 = 1_700_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=T0)


@pytest.fixture
def store(tmp_path, clock):
    s = Store(tmp_path / "reranker.sqlite3", clock)
    yield s
    s.close()


def record(i: int, version: str = "v1", at: float = T0, latency: float = 10.0, status: int = 200,
           **extra: object) -> RequestRecord:
    return RequestRecord(at=at, request_id=f"r{i}", version=version, n_documents=3, latency_ms=latency,
                         status=status, **extra)  # type: ignore[arg-type]


def make_writer(store: Store, clock: FakeClock, **kwargs: object) -> RequestLogWriter:
    options = {"max_rows": 1000, "max_age_days": 7, "wait_s": 0.01} | kwargs
    return RequestLogWriter(store, clock=clock, **options)  # type: ignore[arg-type]


def test_records_round_trip_through_the_writer(store, clock):
    writer = make_writer(store, clock)
    full = record(1, user_hash="ab12", region="eu", shadow_version="v2", shadow_agreement=0.75,
                  top_primary=(2, 0, 1), top_shadow=(2, 1, 0))
    assert writer.submit(full) and writer.submit(record(2))
    assert writer.flush()
    assert recent_requests(store, limit=10) == [record(2), full]
    assert (writer.written, writer.dropped, writer.failures) == (2, 0, 0)
    writer.close()
    assert writer.submit(record(3)) is False and writer.dropped == 1


def test_retention_by_rows_keeps_the_newest(store, clock):
    writer = make_writer(store, clock, max_rows=50, batch_size=16)
    for i in range(120):
        writer.submit(record(i))
    assert writer.flush()
    assert count_requests(store) == 50
    assert [r.request_id for r in recent_requests(store, limit=2)] == ["r119", "r118"]
    assert recent_requests(store, limit=100)[-1].request_id == "r70"
    writer.close()


def test_retention_by_days_follows_the_injected_clock(store, clock):
    writer = make_writer(store, clock, max_age_days=2)
    writer.submit(record(1, at=T0))
    writer.submit(record(2, at=T0 + 1.5 * DAY_S))
    assert writer.flush() and count_requests(store) == 2
    clock.advance(2.5 * DAY_S)
    assert writer.flush()
    assert [r.request_id for r in recent_requests(store)] == ["r2"]
    writer.close()


def test_submit_never_blocks_when_the_queue_is_full(store, clock):
    writer = make_writer(store, clock, queue_size=10, batch_size=1)
    accepted: list[bool] = []
    elapsed: list[float] = []

    def submit_many() -> None:
        started = time.perf_counter()
        accepted.extend(writer.submit(record(i)) for i in range(1, 101))
        elapsed.append(time.perf_counter() - started)

    with store._lock:  # the writer thread is stuck on its first insert while we hold the file
        writer.submit(record(0))
        time.sleep(0.05)
        submitter = threading.Thread(target=submit_many)
        submitter.start()
        submitter.join(2)
        blocked = submitter.is_alive()
    submitter.join(5)
    assert not blocked, "submit() blocked on a full queue"
    assert elapsed[0] < 0.05, f"100 submits took {elapsed[0] * 1000:.1f} ms"
    assert accepted.count(True) <= 11 and writer.dropped == accepted.count(False) >= 89
    assert writer.flush()
    assert count_requests(store) == 1 + accepted.count(True)
    writer.close()


def test_concurrent_submitters(store, clock):
    writer = make_writer(store, clock, queue_size=10_000, max_rows=10_000)

    def work(n: int) -> None:
        for i in range(500):
            writer.submit(record(n * 1000 + i, version=f"v{n % 2}"))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert writer.flush()
    assert count_requests(store) == 2000 and writer.written == 2000 and writer.dropped == 0
    writer.close()


def test_writer_survives_a_failed_write(store, clock):
    writer = make_writer(store, clock)
    store.close()
    writer.submit(record(1))
    assert writer.flush()
    assert writer.failures >= 1 and writer.written == 0
    writer.close()


def test_writer_refuses_bad_limits(store, clock):
    with pytest.raises(InputError, match="max_rows=0"):
        RequestLogWriter(store, max_rows=0, max_age_days=1, clock=clock)


def test_percentile_interpolates():
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([float(i) for i in range(1, 101)], 95) == pytest.approx(95.05)


def test_version_stats_counts_errors_share_and_latency(store, clock):
    writer = make_writer(store, clock)
    for i in range(1, 101):
        writer.submit(record(i, "v1", at=T0 + i * 0.01, latency=float(i)))
    for i in range(20):
        writer.submit(record(200 + i, "v2", at=T0 + 1, latency=50.0, status=503 if i < 5 else 200))
    writer.submit(record(999, "v1", at=T0 - 100, latency=1e6))  # outside the window
    writer.flush()
    v1, v2 = version_stats(store, since=T0)
    assert (v1.version, v1.count, v1.errors, v1.p50_ms, v1.mean_ms) == ("v1", 100, 0, 50.5, 50.5)
    assert v1.p95_ms == pytest.approx(95.05) and v1.p99_ms == pytest.approx(99.01)
    assert (v2.count, v2.errors, v2.p95_ms) == (20, 5, 50.0)
    assert (v1.share, v2.share) == pytest.approx((100 / 120, 20 / 120))
    assert [s.count for s in version_stats(store, since=T0, until=T0 + 0.5)] == [49]
    writer.close()


def test_shadow_stats_and_series(store, clock):
    writer = make_writer(store, clock)
    agreements = [1.0, 0.5, 0.75]
    for i, agreement in enumerate(agreements):
        writer.submit(record(i, "v1", at=T0 + i, shadow_version="v2", shadow_agreement=agreement))
    writer.submit(record(10, "v1", at=T0 + 12, latency=30.0, status=500))
    writer.submit(record(11, "v2", at=T0 + 15, latency=20.0))
    writer.flush()
    assert shadow_stats(store, since=T0) == [ShadowStats("v1", "v2", 3, 0.75)]
    series = latency_series(store, since=T0, bucket_s=10)
    assert series == [
        SeriesPoint(T0, "v1", 3, 0, 10.0, 10.0),
        SeriesPoint(T0 + 10, "v1", 1, 1, None, None),
        SeriesPoint(T0 + 10, "v2", 1, 0, 20.0, 20.0),
    ]
    with pytest.raises(InputError, match="bucket_s must be positive, got 0"):
        latency_series(store, since=T0, bucket_s=0)
    writer.close()
