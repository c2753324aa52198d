import sqlite3
import threading

import pytest

from reranker.clock import FakeClock
from reranker.control.policy import TrafficPolicy
from reranker.control.store import (
    MIGRATIONS,
    AuditEntry,
    EventRecord,
    GateRecord,
    StableRef,
    Store,
    VersionRecord,
)
from reranker.errors import Conflict, NotFound

PLAN = {"stages": [{"share": 5, "seconds": 30}, {"share": 100, "seconds": 0}]}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_700_000_000.0)


@pytest.fixture
def store(tmp_path, clock):
    s = Store(tmp_path / "data" / "reranker.sqlite3", clock)
    yield s
    s.close()


def test_schema_is_created_in_wal_mode(store, tmp_path):
    assert store.schema_version() == len(MIGRATIONS)
    tables = {r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"versions", "rollouts", "gate_results", "audit_log", "events", "request_log", "kv",
            "schema_version"} <= tables
    assert store.query("PRAGMA journal_mode")[0][0] == "wal"
    assert (tmp_path / "data" / "reranker.sqlite3").exists()


def test_a_newer_schema_is_refused(tmp_path, clock):
    path = tmp_path / "s.sqlite3"
    Store(path, clock).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(Conflict, match="schema version 99"):
        Store(path, clock)


def test_versions_round_trip(store):
    record = VersionRecord("mini-v1", "models/mini-v1", "mini", "float32", "cpu", 123_456, "serving", 1.5)
    store.save_version(record)
    assert store.get_version("mini-v1") == record
    store.set_version_state("mini-v1", "retired")
    assert store.get_version("mini-v1").state == "retired"
    store.save_version(VersionRecord("mini-v0", "models/mini-v0", "mini", "float32", "cpu", 1, "ready", 0.5))
    assert [v.id for v in store.list_versions()] == ["mini-v0", "mini-v1"]
    assert store.get_version("nope") is None
    with pytest.raises(NotFound, match="'nope'"):
        store.set_version_state("nope", "ready")


def test_rollouts_and_gates_round_trip(store, clock):
    rid = store.start_rollout("models/mini-v2", "mini-v1", PLAN, "new-model", "loading", actor="alice")
    opened = store.get_rollout(rid)
    assert (opened.candidate, opened.candidate_path, opened.stable, opened.plan, opened.mode, opened.state,
            opened.actor, opened.outcome, opened.started_at, opened.ended_at) == (
        None, "models/mini-v2", "mini-v1", PLAN, "new-model", "loading", "alice", None, clock.now(), None)
    store.update_rollout_state(rid, "validating", candidate="mini-v2")
    store.update_rollout_state(rid, "rolling_out")
    assert (store.get_rollout(rid).candidate, store.get_rollout(rid).state) == ("mini-v2", "rolling_out")
    assert [r.id for r in store.open_rollouts()] == [rid]

    store.record_gate(rid, "p95_ratio", 1.31, 1.15, False, "candidate p95 41 ms vs stable 31 ms")
    store.record_gate(rid, "golden_set", None, None, True)
    assert store.gate_results(rid) == [
        GateRecord(rid, "p95_ratio", 1.31, 1.15, False, "candidate p95 41 ms vs stable 31 ms", clock.now()),
        GateRecord(rid, "golden_set", None, None, True, "", clock.now()),
    ]
    clock.advance(60)
    store.finish_rollout(rid, "rolled_back", "rolled_back", reason="gate p95_ratio failed")
    done = store.get_rollout(rid)
    assert (done.state, done.outcome, done.reason, done.ended_at) == (
        "rolled_back", "rolled_back", "gate p95_ratio failed", clock.now())
    assert store.open_rollouts() == []
    second = store.start_rollout("models/mini-v3", "mini-v1", PLAN, "identical", "loading", actor="bob")
    assert [r.id for r in store.recent_rollouts(limit=5)] == [second, rid]
    with pytest.raises(NotFound, match="rollout 999"):
        store.finish_rollout(999, "done", "promoted")
    with pytest.raises(NotFound, match="rollout 999"):
        store.get_rollout(999)


def test_audit_and_events_round_trip(store, clock):
    store.record_audit("alice", "start_update", "models/mini-v2", "ok", "plan=default")
    clock.advance(1)
    store.record_audit("bob", "rollback", "mini-v2", "refused", "no rollout in flight")
    assert store.recent_audit(limit=10) == [
        AuditEntry(clock.now(), "bob", "rollback", "mini-v2", "refused", "no rollout in flight"),
        AuditEntry(clock.now() - 1, "alice", "start_update", "models/mini-v2", "ok", "plan=default"),
    ]
    assert len(store.recent_audit(limit=1)) == 1
    store.record_event("info", "stage", "share 5%", rollout_id=7)
    store.record_event("alert", "gate_failed", "p95 ratio 1.31 > 1.15", rollout_id=8)
    store.record_event("info", "startup", "serving mini-v1")
    assert store.recent_events(limit=10, rollout_id=7) == [EventRecord(clock.now(), "info", "stage", "share 5%", 7)]
    assert [e.kind for e in store.recent_events(limit=10)] == ["startup", "gate_failed", "stage"]


def test_settings_stable_and_policy_round_trip(store):
    assert store.get_stable() is None and store.load_policy() is None and store.get_setting("x") is None
    store.set_stable("mini-v1", "models/mini-v1")
    store.set_stable("mini-v2", "models/mini-v2")
    assert store.get_stable() == StableRef("mini-v2", "models/mini-v2")
    policy = TrafficPolicy.from_dict({"weights": {"mini-v1": 95, "mini-v2": 5}, "sticky": True,
                                      "rules": [{"cidr": "10.0.0.0/8", "version": "mini-v1"}],
                                      "shadow": {"version": "mini-v2"}})
    store.save_policy(policy)
    assert store.load_policy() == policy
    store.set_setting("theme", "dark")
    assert store.get_setting("theme") == "dark"


def test_data_survives_reopening_the_file(tmp_path, clock):
    path = tmp_path / "reranker.sqlite3"
    first = Store(path, clock)
    first.set_stable("mini-v1", "models/mini-v1")
    rid = first.start_rollout("models/mini-v2", "mini-v1", PLAN, "new-model", "rolling_out", actor="alice")
    first.record_audit("alice", "start_update", "models/mini-v2", "ok")
    first.save_version(VersionRecord("mini-v1", "models/mini-v1", "mini", "float32", "cpu", 9, "serving", 1.0))
    first.close()  # as if the process stopped mid-rollout

    second = Store(path, clock)
    assert second.get_stable() == StableRef("mini-v1", "models/mini-v1")
    assert [(r.id, r.state) for r in second.open_rollouts()] == [(rid, "rolling_out")]
    assert second.recent_audit(1)[0].action == "start_update"
    assert second.get_version("mini-v1").bytes == 9
    assert second.schema_version() == len(MIGRATIONS)
    second.close()


def test_concurrent_writers_from_threads(store):
    def work(n: int) -> None:
        for i in range(50):
            store.record_audit(f"user-{n}", "rank", str(i), "ok")
            store.record_event("info", "tick", f"{n}-{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(store.recent_audit(limit=1000)) == 300
    assert len(store.recent_events(limit=1000)) == 300
