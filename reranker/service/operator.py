"""Operator and experiment actions of the facade (credentials checked by the callers' front end)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from reranker.control.requeststats import latency_samples, shadow_stats, latency_series, version_stats
from reranker.errors import InputError, InsufficientMemory, NotFound, RerankerError
from reranker.evaluation import load_labelled_set
from reranker.service.authlog import tokens_match
from reranker.service.experiments import Evidence, decide
from reranker.service.golden import DecodedSet
from reranker.service.replace import replace_in_place

if TYPE_CHECKING:
    from reranker.service.core import RerankService

LATENCY_DEFINITION = ("request latency: wall clock from arrival to answer, ms; P50/P95 by linear interpolation "
                      "(the same as /metrics and the rollout's live window); the decision compares the versions' "
                      "medians with a one-sided Mann-Whitney U test, as the rollout latency gate does")


class OperatorMixin:
    """Mixed into RerankService: hot updates, versions side by side, traffic, experiments."""

    def check_admin(self: "RerankService", token: str | None) -> bool:
        return tokens_match(token, self.admin_token())

    def check_console_token(self: "RerankService", token: str | None) -> bool:
        """check_admin for the console's sign-in: a wrong token is logged and audited like the API's."""
        if self.check_admin(token):
            return True
        self.auth_failed("ui", None, "console sign-in", "wrong token" if token else "empty token")
        return False

    def auth_failed(self: "RerankService", source: str, client: str | None, target: str, reason: str) -> None:
        """A failed admin authentication (wrong or missing token): logged and audited, rate-limited."""
        self.auth_failures.record(source, client, target, reason)

    def known_model_dirs(self: "RerankService") -> list[str]:
        root = self.settings.models_dir
        if not root.is_dir():
            return []
        return sorted(str(p) for p in root.iterdir()
                      if p.is_dir() and ((p / "reranker.json").exists() or (p / "config.json").exists()))

    def status(self: "RerankService") -> dict[str, Any]:
        return self.updates.status(self.is_ready())

    def submit_update(self: "RerankService", path: str, plan: str | Sequence[Any] | None = None,
                      mode: str | None = None, actor: str = "operator", force_replace: bool = False) -> int:
        try:
            self.check_room(path)
        except InsufficientMemory as exc:
            if not force_replace:
                self.audit_refusal(actor, "hot_update", path, exc)
                raise
            return replace_in_place(self, path, actor)
        except RerankerError as exc:
            self.audit_refusal(actor, "hot_update", path, exc)
            raise
        return self.updates.submit(path, plan, mode, actor)

    def check_room(self: "RerankService", ref: str) -> None:
        """Refuse before anything changes when the candidate cannot be loaded beside the stable one."""
        _, path = self.versions_manager.resolve(ref)  # also reads the manifest: a broken one is named
        self.versions_manager.engines.check_room(path)

    def rollout_command(self: "RerankService", command: str, actor: str = "operator") -> None:
        self.updates.command(command, actor)

    def load_version(self: "RerankService", path: str, actor: str = "operator") -> str:
        """Check, record, then start loading; nothing loads unless the audit entry is written."""
        try:
            self.check_room(path)
            version, _ = self.versions_manager.resolve(path)
            self.registry.check_new(version)
        except RerankerError as exc:
            self.audit_refusal(actor, "load_version", path, exc)
            raise
        self.store.record_audit(actor, "load_version", path, "started", version)
        try:
            job = self.versions_manager.start_load(path)
        except RerankerError as exc:  # lost a race after the check
            self.audit_refusal(actor, "load_version", path, exc)
            raise
        return job.version

    def unload_version(self: "RerankService", version: str, actor: str = "operator") -> None:
        """Check, record, then drain and unload."""
        try:
            self.registry.check_unloadable(version)
        except RerankerError as exc:
            self.audit_refusal(actor, "unload_version", version, exc)
            raise
        self.store.record_audit(actor, "unload_version", version, "ok", "")
        try:
            self.versions_manager.unload(version)
        except RerankerError as exc:
            self.audit_refusal(actor, "unload_version", version, exc)
            raise

    def start_rollout_of(self: "RerankService", version: str, actor: str = "operator",
                         plan: str | None = "default") -> int:
        """Roll out a version already loaded beside the stable one, by reloading its directory. A
        copy without traffic is unloaded first, so memory never holds it twice (no `name~2`)."""
        info = next((v for v in self.versions() if v["id"] == version), None)
        if info is None or not info.get("path"):
            raise NotFound(f"version {version!r} is not loaded")
        if info.get("stable"):
            raise InputError(f"version {version!r} already serves as the stable version")
        if not info.get("share"):
            self.unload_version(version, actor)
        return self.updates.submit(info["path"], plan, "new-model", actor)

    # ---- experiments ---------------------------------------------------------------------
    def quality(self: "RerankService", version: str) -> float:
        """Mean NDCG@5 of a loaded version on the labelled set (cached per version)."""
        if version in self._quality:
            return self._quality[version]
        golden = DecodedSet.build(load_labelled_set(self.settings.golden_set), self._golden_decoders())
        self._quality[version] = golden.mean_ndcg(golden.scores(self.registry, version))
        return self._quality[version]

    def experiment_report(self: "RerankService", window_s: float = 600.0, candidate: str | None = None) -> dict[str, Any]:
        self.request_log.flush(timeout_s=2.0)
        now = self.clock.now()
        # Like with like: never reach back past the last traffic-policy change, so every version's
        # figures (share, latency, errors) come from the same period under the same policy.
        since = max(now - window_s, self._policy_since or 0.0)
        stats = {s.version: s for s in version_stats(self.store, since)}
        loaded = {v["id"]: v for v in self.versions() if v["state"] in ("ready", "serving")}
        rows = []
        for version in sorted(set(stats) | set(loaded)):
            s, v = stats.get(version), loaded.get(version, {})
            rows.append({
                "version": version, "requests": s.count if s else 0, "errors": s.errors if s else 0,
                "error_rate": (s.errors / s.count) if s and s.count else 0.0,
                "p50_ms": s.p50_ms if s else None, "p95_ms": s.p95_ms if s else None,
                "observed_share": s.share if s else 0.0, "configured_share": v.get("share", 0.0),
                "bytes_in_memory": v.get("bytes_in_memory"), "loaded": version in loaded,
            })
        series = [vars(p) for p in latency_series(self.store, since, bucket_s=max(5.0, window_s / 60))]
        report = {
            "window_s": window_s, "window_start": since, "since_policy_change": since > now - window_s,
            "versions": rows, "series": series,
            "latency_definition": LATENCY_DEFINITION,
            "scores": self.score_history.snapshot(),
            "shadow": [vars(s) for s in shadow_stats(self.store, since)],
            "shadow_live": self.shadow_stats.summary(),
            "decision": None,
        }
        stable = self.stable_version()
        others = [r for r in rows if r["loaded"] and r["version"] != stable]
        if candidate is None and others:
            candidate = max(others, key=lambda r: (r["requests"], r["version"]))["version"]
        if stable and candidate and candidate in loaded:
            samples = latency_samples(self.store, since)
            report["decision"] = decide(self._evidence(stable, rows, samples), self._evidence(candidate, rows, samples),
                                        self.gate_config)
        return report

    def _evidence(self: "RerankService", version: str, rows: list[dict[str, Any]],
                  samples: dict[str, list[float]]) -> Evidence:
        row = next(r for r in rows if r["version"] == version)
        try:
            ndcg: float | None = self.quality(version)
        except RerankerError:
            ndcg = None
        return Evidence(version, row["requests"], row["error_rate"], row["p95_ms"], row["bytes_in_memory"], ndcg,
                        samples.get(version, ()), row["errors"])

