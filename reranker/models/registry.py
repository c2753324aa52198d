"""Backends by name, backend detection from a model directory, and model references to paths."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Sequence

from reranker.errors import InputError, ModelLoadError, NotFound
from reranker.models.base import Backend
from reranker.textcheck import check_path, shown

MANIFEST = "reranker.json"
LOOKED_FOR = "no config.json with Qwen3VLForConditionalGeneration and no reranker.json manifest"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$", re.ASCII)  # what the hub accepts as a repo id
WITH_REVISION = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)@(?P<revision>[^/@]+)$", re.ASCII)
COMMIT = re.compile(r"^[0-9a-f]{40}$")
Download = Callable[[str, str], str]  # (repo id, commit hash) -> local snapshot directory


def backends() -> list[Backend]:
    """Every shipped backend. Imported on call, so importing this module stays light."""
    from reranker.models.mini import BACKEND as MINI
    from reranker.models.qwen3vl import BACKEND as QWEN3_VL

    return [QWEN3_VL, MINI]


def backend_named(name: str, candidates: Sequence[Backend] | None = None) -> Backend:
    known = list(candidates) if candidates is not None else backends()
    for backend in known:
        if backend.name == name:
            return backend
    names = ", ".join(backend.name for backend in known)
    raise NotFound(f"backend {name!r} is unknown; known backends: {names}")


def detect_backend(path: Path, candidates: Sequence[Backend] | None = None) -> Backend:
    """The backend whose files are in the directory."""
    _require_directory(path)
    known = list(candidates) if candidates is not None else backends()
    for backend in known:
        if backend.matches(path):
            return backend
    names = ", ".join(backend.name for backend in known)
    raise ModelLoadError(f"no model backend ({names}) recognises {path}: {LOOKED_FOR}")


def read_manifest(path: Path) -> dict[str, object] | None:
    """The directory's reranker.json as a dict, or None when it has none."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{manifest} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{manifest} must hold a JSON object, got {type(data).__name__}")
    return data


def model_id_for(path: Path) -> str:
    """The manifest's "id" when it names one, else the directory name."""
    manifest = read_manifest(path) or {}
    named = manifest.get("id")
    if isinstance(named, str) and named.strip():
        return named.strip()
    return path.resolve().name


def resolve_model_ref(ref: str, models_dir: Path, hub_cache: Path | None = None,
                      download: Download | None = None) -> Path:
    """A model directory from a path, a bare name under models_dir, or a hub id.

    A hub id (org/name, or org/name@<40-hex commit> pinned to a revision) resolves to
    models_dir/org/name, models_dir/name or a snapshot in the Hugging Face cache (hub_cache; None =
    its default). Only when the operator allowed downloads (`download`, e.g. a wrapper of
    huggingface_hub.snapshot_download) is a missing hub id fetched, and only a pinned one: what
    runs must not change when someone pushes to the repo.
    """
    text = ref.strip()
    if not text:
        raise InputError("model path is empty")
    check_path(text, "model path")
    pinned = WITH_REVISION.match(text)
    repo, revision = (pinned["repo"], pinned["revision"]) if pinned else (text, None)
    if revision is not None and not COMMIT.match(revision):
        raise ModelLoadError(
            f"model path {shown(text)} names the revision {shown(revision)}, which is not pinned: a branch or "
            f"tag can move; name a 40-hex commit hash ({repo}@<commit>)"
        )
    given = Path(repo)
    candidates = [given] if given.is_absolute() else [given, models_dir / given]
    if HUB_ID.match(repo):
        candidates.append(models_dir / given.name)
    for candidate in candidates:
        if _is_dir(candidate):
            return candidate.resolve()
    local_folder = given.parts[0] if given.parts else ""
    looks_local = bool(local_folder) and (_is_dir(Path(local_folder)) or _is_dir(models_dir / local_folder))
    if HUB_ID.match(repo) and not given.is_absolute() and not looks_local:  # "models/x": a folder here, no hub id
        try:
            return _from_hub_cache(repo, hub_cache, candidates, revision)
        except ModelLoadError:
            if download is None:
                raise
        if revision is None:
            raise ModelLoadError(
                f"model path {shown(repo)} is a hub id without a pinned revision; --allow-downloads fetches "
                f"only pinned ones: name the commit, e.g. {repo}@<40-hex commit hash>"
            )
        return _download(repo, revision, download)
    looked = ", ".join(shown(str(candidate)) for candidate in candidates)
    raise ModelLoadError(f"model path {shown(ref)} not found: no directory {looked}")


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # e.g. a name over NAME_MAX under models_dir
        return False


def _from_hub_cache(hub_id: str, hub_cache: Path | None, looked_in: list[Path], revision: str | None = None) -> Path:
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(hub_id, "config.json", cache_dir=hub_cache, revision=revision)
    except ValueError as exc:  # HFValidationError: not a repo id the hub accepts
        raise InputError(f"model path {shown(hub_id)} is not a valid Hugging Face repo id: {exc}") from None
    if isinstance(config, str):
        return Path(config).parent
    looked = ", ".join(str(path) for path in looked_in)
    raise ModelLoadError(
        f"model {hub_id!r} looks like a Hugging Face hub id but is not on this machine "
        f"(looked in {looked} and the Hugging Face cache); nothing is downloaded at run time: "
        f"download it first, e.g. `huggingface-cli download {hub_id} --local-dir "
        f"{looked_in[-1]}`, or start the app with --allow-downloads and name a pinned revision "
        f"({hub_id}@<40-hex commit hash>)"
    )


def _download(hub_id: str, revision: str, download: Download) -> Path:
    try:
        return Path(download(hub_id, revision))
    except Exception as exc:  # network, auth or missing repo: say which model and why
        raise ModelLoadError(f"could not download {hub_id!r}: {type(exc).__name__}: {exc}") from exc


def _require_directory(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(f"model directory {path} does not exist")
    if not path.is_dir():
        raise ModelLoadError(f"model path {path} is not a directory")
