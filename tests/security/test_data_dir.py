"""Issue 8, item 7: a full, read-only or vanished data directory never makes the record lie.

The attack filled the disk: `POST /admin/updates` answered 500 but the update started, `PUT
/admin/traffic` answered 500 but was applied, acknowledge answered 500 but took effect, none was
audited, and ~230 request-log rows vanished silently. The rule now: write the record, then apply
the change; if the record cannot be written, apply nothing and answer 503 naming the data
directory. A full disk is injected as a SQLite connection that refuses every write with SQLite's
own error; a read-only directory at start-up is a real one (chmod, or a read-only bind mount when
the tests run as root, since root ignores file modes).
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from reranker.clock import FakeClock
from reranker.service import RerankService
from tests.conftest import AUTH, CANDIDATE, MODELS, ROOT, STABLE, api_client, build_service, make_settings

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "BEGIN", "COMMIT", "CREATE")


class FullDisk:
    """Wraps the store's sqlite3 connection; while `full`, every write fails as on a full disk."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.full = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def _check(self, sql: str) -> None:
        if self.full and sql.lstrip().upper().startswith(WRITES):
            raise sqlite3.OperationalError("database or disk is full")

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self._check(sql)
        return self._conn.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        self._check(sql)
        return self._conn.executemany(sql, rows)


@pytest.fixture(scope="module")
def disk_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RerankService, FullDisk]]:
    service = build_service(make_settings(tmp_path_factory.mktemp("full-disk") / "data"))
    disk = FullDisk(service.store._conn)
    service.store._conn = disk  # type: ignore[assignment]
    yield service, disk
    disk.full = False
    service.close()


@pytest.fixture
def full(disk_service: tuple[RerankService, FullDisk]) -> Iterator[tuple[RerankService, TestClient, FullDisk]]:
    service, disk = disk_service
    client = api_client(service)
    yield service, client, disk
    disk.full = False
    assert service.usable_versions() == [STABLE], "a refused change was applied"
    wait_until(lambda: settled(service), "every other version to leave memory")


def settled(service: RerankService) -> bool:
    return all(v.id == STABLE or v.state.value in ("retired", "failed") for v in service.registry.list())


def audit_actions(service: RerankService) -> list[tuple[str, str]]:
    return [(e.action, e.outcome) for e in service.audit(200)]


def assert_503_names_data_dir(response: Any, service: RerankService) -> None:
    assert response.status_code == 503, response.text
    message = response.json()["error"]["message"]
    assert str(service.settings.data_dir.resolve()) in message and "disk is full" in message, message
    assert response.json()["error"]["type"] == "StoreUnavailable"


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_traffic_change_is_not_applied_when_it_cannot_be_recorded(full: Any) -> None:
    service, client, disk = full
    before = client.get("/admin/traffic", headers=AUTH).json()
    actions = audit_actions(service)
    disk.full = True
    response = client.put("/admin/traffic", headers=AUTH, json={"weights": {STABLE: 100}, "sticky": False})
    assert_503_names_data_dir(response, service)
    assert client.get("/admin/traffic", headers=AUTH).json() == before
    disk.full = False
    assert audit_actions(service) == actions
    assert client.put("/admin/traffic", headers=AUTH, json=before).status_code == 200


def test_update_does_not_start_when_it_cannot_be_recorded(full: Any) -> None:
    service, client, disk = full
    rollouts = len(service.store.recent_rollouts(100))
    disk.full = True
    response = client.post("/admin/updates", headers=AUTH, json={"path": str(MODELS / CANDIDATE), "plan": "demo"})
    assert_503_names_data_dir(response, service)
    disk.full = False
    assert service.status().state in ("idle", "cancelled", "rolled_back", "failed")
    assert not [v for v in service.registry.list() if v.id.startswith(CANDIDATE)], "the candidate started loading"
    assert len(service.store.recent_rollouts(100)) == rollouts
    assert ("hot_update", "started") not in audit_actions(service)[:1]


def test_load_beside_does_not_start_when_it_cannot_be_recorded(full: Any) -> None:
    service, client, disk = full
    disk.full = True
    response = client.post("/admin/versions", headers=AUTH, json={"path": str(MODELS / CANDIDATE)})
    assert_503_names_data_dir(response, service)
    disk.full = False
    assert not [v for v in service.registry.list() if v.id.startswith(CANDIDATE)]


def test_commands_are_recorded_before_they_apply(full: Any) -> None:
    service, client, disk = full
    assert client.post("/admin/updates", headers=AUTH,
                       json={"path": str(MODELS / CANDIDATE), "plan": "demo"}).status_code == 202
    disk.full = True  # cancel cannot be recorded: the update keeps loading
    state = service.status().state
    response = client.post("/admin/rollout/cancel", headers=AUTH)
    if state == "loading":
        assert_503_names_data_dir(response, service)
        assert service.status().state != "cancelled"
    disk.full = False
    for command in ("cancel", "rollback"):
        if client.post(f"/admin/rollout/{command}", headers=AUTH).status_code == 200:
            break
    # (a load that finished while the disk was full could not record its version: it failed)
    wait_until(lambda: service.status().state in ("cancelled", "rolled_back", "failed"), "the update to end")
    wait_until(lambda: service.usable_versions() == [STABLE], "the candidate to be unloaded")
    ended = service.status().state
    disk.full = True  # acknowledge cannot be recorded: nothing changes
    assert_503_names_data_dir(client.post("/admin/rollout/acknowledge", headers=AUTH), service)
    assert service.status().state == ended
    disk.full = False
    assert client.post("/admin/rollout/acknowledge", headers=AUTH).status_code == 200
    assert service.status().state == "idle"
    assert ("acknowledge", "ok") in audit_actions(service)[:1]


def test_unload_is_recorded_before_it_applies(full: Any) -> None:
    service, client, disk = full
    assert client.post("/admin/versions", headers=AUTH, json={"path": str(MODELS / CANDIDATE)}).status_code == 202
    wait_until(lambda: service.registry.get(CANDIDATE).state.value == "ready", "the candidate to load")
    disk.full = True
    assert_503_names_data_dir(client.delete(f"/admin/versions/{CANDIDATE}", headers=AUTH), service)
    assert service.registry.get(CANDIDATE).state.value == "ready"
    disk.full = False
    assert client.delete(f"/admin/versions/{CANDIDATE}", headers=AUTH).status_code == 200


def test_refusals_still_say_why_when_the_disk_is_full(full: Any) -> None:
    service, client, disk = full
    disk.full = True
    response = client.put("/admin/traffic", headers=AUTH, json={"weights": {"ghost": 100}})
    assert response.status_code == 422 and "ghost" in response.json()["error"]["message"]
    response = client.get("/admin/status", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert client.get("/admin/status", headers=AUTH).status_code == 200


def test_readiness_names_the_data_directory_and_request_log_losses_are_counted(full: Any) -> None:
    service, client, disk = full
    # An earlier full-disk test may still show until the watcher's next probe (at most seconds).
    wait_until(lambda: client.get("/readyz").status_code == 200, "readiness before the test", timeout_s=15)
    disk.full = True
    for i in range(5):
        assert client.post("/v1/rerank", json={"query": f"q{i}", "documents": ["a", "b"]}).status_code == 200
    service.request_log.flush(timeout_s=10)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert str(service.settings.data_dir.resolve()) in response.json()["reason"]
    metrics = client.get("/metrics").text
    lost = [line for line in metrics.splitlines()
            if line.startswith('reranker_requestlog_dropped_total{reason="write_failed"}')]
    assert lost and float(lost[0].split()[-1]) >= 5, metrics[-2000:]
    assert "reranker_store_writable 0.0" in metrics
    disk.full = False
    wait_until(lambda: client.get("/readyz").status_code == 200, "readiness to recover", timeout_s=15)


class CountingStore:
    def __init__(self) -> None:
        self.probes = 0
        self.write_error: str | None = None
        self.file_problem: str | None = None
        self.answer: str | None = None

    def unwritable(self, why: str) -> str:
        return f"cannot write: {why}"

    def check_file(self) -> str | None:
        return self.file_problem

    def check_writable(self) -> str | None:
        self.probes += 1
        return self.answer


def test_the_write_probe_is_rate_limited_but_failures_show_at_once() -> None:
    from reranker.control.storehealth import StoreHealth

    store, clock, alerts = CountingStore(), FakeClock(), []
    health = StoreHealth(store, clock, lambda kind, message: alerts.append((kind, message)), interval_s=5.0)
    assert [health.problem() for _ in range(50)] == [None] * 50
    assert store.probes == 1
    clock.advance(5.0)
    health.problem()
    assert store.probes == 2
    store.write_error, store.answer = "database or disk is full", "cannot write to the store: disk full"
    assert health.problem(probe=False) == "cannot write: database or disk is full"  # readiness: no I/O
    assert store.probes == 2 and len(alerts) == 1
    assert health.problem() == store.answer and store.probes == 3  # the watcher probes at once
    assert health.problem(probe=False) == store.answer and store.probes == 3
    assert alerts == [("store_unwritable", "cannot write: database or disk is full")]
    store.file_problem = "the file is gone"
    assert health.problem(probe=False) == "the file is gone" and store.probes == 3  # one stat, every call


class Webhook:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                owner.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_deleting_the_store_file_is_noticed(make_service: Callable[..., RerankService]) -> None:
    hook = Webhook()
    try:
        service = make_service(webhook_url=hook.url)
        client = api_client(service)
        assert client.get("/readyz").status_code == 200
        os.unlink(service.store.path)
        response = client.get("/readyz")
        assert response.status_code == 503
        reason = response.json()["reason"]
        assert "gone" in reason and str(service.settings.data_dir.resolve()) in reason
        wait_until(lambda: any(b["kind"] == "store_unwritable" for b in hook.bodies), "the alert", timeout_s=10)
        assert "reranker_store_writable 0.0" in client.get("/metrics").text
    finally:
        hook.server.shutdown()
        hook.server.server_close()


def test_an_unusable_data_directory_is_one_clear_error(tmp_path: Path) -> None:
    from reranker.errors import StoreUnavailable

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    with pytest.raises(StoreUnavailable, match=str(blocker)):
        RerankService(make_settings(blocker / "data"), FakeClock(), "tok")


def _read_only_runner(data_dir: Path) -> list[str] | None:
    """A command prefix under which `data_dir` is really read-only, or None if this machine has none."""
    if os.geteuid() != 0:
        data_dir.chmod(0o555)
        return []
    if shutil.which("unshare") and shutil.which("mount"):
        probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind -o ro '{data_dir}' '{data_dir}' && "
                                f"! touch '{data_dir}/probe' 2>/dev/null"], capture_output=True)
        if probe.returncode == 0:
            return ["unshare", "-m", "sh", "-c", f"mount --bind -o ro '{data_dir}' '{data_dir}' && exec \"$@\"", "sh"]
    return None


def test_read_only_data_directory_at_start_up_exits_with_one_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    runner = _read_only_runner(data_dir)
    if runner is None:
        pytest.skip("neither file modes nor a read-only bind mount can make a directory read-only here")
    env = {**os.environ, "RERANKER_ADMIN_TOKEN": "t", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    try:
        done = subprocess.run([*runner, sys.executable, str(ROOT / "app.py"), "--data-dir", str(data_dir),
                               "--port", "1"], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    finally:
        data_dir.chmod(0o755)
    assert done.returncode not in (0, None), done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("app.py:")]
    assert len(lines) == 1 and str(data_dir) in lines[0], done.stderr
    assert "readonly" in lines[0] or "read-only" in lines[0].lower(), lines[0]
