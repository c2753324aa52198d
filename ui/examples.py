"""Ready-made Playground examples from a JSON file in assets/examples (media as relative paths)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ui.entries import Entry

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
FILE_PATTERN = "demo*.json"


@dataclass(frozen=True)
class Example:
    name: str
    query: Entry
    documents: tuple[Entry, ...]
    instruction: str | None = None


def _entry(raw: Any, folder: Path) -> Entry:
    if isinstance(raw, str):
        return Entry(text=raw)
    if not isinstance(raw, dict):
        return Entry()

    def media(key: str) -> str | None:
        value = raw.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        return str((folder / value).resolve()) if isinstance(value, str) and value else None

    return Entry(text=raw.get("text") or None, image=media("image"), video=media("video"))


def _example(raw: dict[str, Any], folder: Path, number: int) -> Example | None:
    query = _entry(raw.get("query"), folder)
    documents = tuple(_entry(d, folder) for d in raw.get("documents") or ())
    if query.is_blank() or not documents or any(d.is_blank() for d in documents):
        return None
    name = raw.get("name") or raw.get("title") or query.text or f"example {number}"
    return Example(str(name), query, documents, raw.get("instruction") or None)


def _items(data: Any) -> list[Any]:
    if isinstance(data, dict):
        data = data.get("examples")
    return data if isinstance(data, list) else []


def load_examples(folder: Path = EXAMPLES_DIR) -> list[Example]:
    """Every usable example of every matching JSON file; files of another shape are skipped."""
    examples: list[Example] = []
    for path in sorted(folder.glob(FILE_PATTERN)):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for raw in _items(data):
            made = _example(raw, folder, len(examples) + 1) if isinstance(raw, dict) else None
            if made is not None:
                examples.append(made)
    return examples
