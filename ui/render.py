"""Pure HTML for ranked results, compare tables and document lists, with stable data-* hooks."""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Sequence

from reranker.service.types import CompareResult, RankResult

MARK_SYMBOLS = {"up": "▲", "down": "▼", "same": "=", "new": "★ new", "dropped": "✕ dropped"}


@dataclass(frozen=True)
class Preview:
    """What the page shows for one query or document: a short label and an optional thumbnail."""

    label: str
    thumb: str | None = None  # a data: URI
    kind: str = "text"  # "text" | "image" | "video" | "mixed"


def attr(value: object) -> str:
    return escape(str(value), quote=True)


def error_html(message: str) -> str:
    return f'<div class="rr-error" data-testid="error" role="alert">{escape(message)}</div>'


def note_html(message: str) -> str:
    return f'<div class="rr-note" data-testid="note">{escape(message)}</div>'


STALE_NOTE = "Inputs changed since this ranking: press Rank to update it."


def pending_html(message: str) -> str:
    """Shown in place of the results while a ranking runs (no made-up percentage)."""
    return (f'<div class="rr-results rr-pending-run" data-testid="pending" aria-busy="true">'
            f'<div class="rr-status-line">{escape(message)}</div>'
            f'<div class="rr-skeleton"></div><div class="rr-skeleton"></div><div class="rr-skeleton"></div></div>')


def skeleton_html(message: str) -> str:
    return (f'<div class="rr-skeleton-box" data-testid="skeleton"><div class="rr-note">{escape(message)}</div>'
            f'<div class="rr-skeleton"></div><div class="rr-skeleton"></div></div>')


def instruction_note(version: str) -> str:
    return (f'<div class="rr-hint" data-testid="instruction-ignored">{escape(version)} ignores the instruction'
            " (it has no instruction-following part): the ranking is the same without it.</div>")


def thumb_html(preview: Preview) -> str:
    if preview.thumb is None:
        return ""
    badge = '<span class="rr-badge">▶</span>' if preview.kind == "video" else ""
    return f'<span class="rr-thumb"><img src="{attr(preview.thumb)}" alt="{attr(preview.label)}">{badge}</span>'


def score_bar(score: float) -> str:
    width = min(max(score, 0.0), 1.0) * 100
    return f'<span class="rr-bar"><span class="rr-fill" style="width:{width:.1f}%"></span></span>'


def _label(previews: Sequence[Preview], index: int) -> Preview:
    return previews[index] if 0 <= index < len(previews) else Preview(f"document {index}")


def results_html(result: RankResult, previews: Sequence[Preview], note: str = "") -> str:
    """The ranked list: rank, score bar, thumbnail and label of each document (`note`: extra HTML)."""
    items = []
    for rank, doc in enumerate(result.results, start=1):
        preview = _label(previews, doc.index)
        items.append(
            f'<li data-rank="{rank}" data-index="{doc.index}" data-score="{doc.score:.6f}">'
            f'<span class="rr-rank">{rank}</span>{thumb_html(preview)}'
            f'<span class="rr-doc"><span class="rr-label">#{doc.index} {escape(preview.label)}</span>'
            f'{score_bar(doc.score)}<span class="rr-score">{doc.score:.4f}</span></span></li>'
        )
    header = (
        f'<div class="rr-meta" data-testid="result-meta">answered by <b data-testid="version">{escape(result.version)}</b>'
        f' in <b data-testid="latency" data-ms="{result.latency_ms:.1f}">{result.latency_ms:.0f} ms</b>'
        f' · {result.n_documents} documents</div>'
    )
    return (
        f'<div class="rr-results" data-stale="false"><div class="rr-stale-note" data-testid="stale-note">{STALE_NOTE}</div>'
        f'{header}{note}<ol data-testid="results" data-version="{attr(result.version)}"'
        f' data-latency-ms="{result.latency_ms:.1f}" class="rr-list">{"".join(items)}</ol></div>'
    )


def documents_html(previews: Sequence[Preview]) -> str:
    """The documents entered so far, numbered as the service will index them."""
    if not previews:
        return note_html("No documents yet: add them one by one, paste lines, or drop files.")
    items = "".join(
        f'<li data-index="{i}" data-kind="{attr(p.kind)}">{thumb_html(p)}'
        f'<span class="rr-label">#{i} {escape(p.label)}</span></li>'
        for i, p in enumerate(previews)
    )
    return f'<ol data-testid="documents" data-count="{len(previews)}" class="rr-doclist">{items}</ol>'


def _score_of(result: RankResult, index: int) -> float | None:
    return next((r.score for r in result.results if r.index == index), None)


def _rank_cell(rank: int | None) -> str:
    return str(rank) if rank is not None else "—"


def _score_cell(score: float | None) -> str:
    return f"{score:.4f}" if score is not None else "—"


def compare_html(result: CompareResult, previews: Sequence[Preview]) -> str:
    """Both rankings side by side, one row per document in B's order, rank changes marked."""
    a, b = result.a, result.b
    rows = []
    for change in result.changes:
        preview = _label(previews, change.index)
        rows.append(
            f'<tr data-index="{change.index}" data-mark="{attr(change.mark)}" data-rank-a="{change.rank_a or ""}"'
            f' data-rank-b="{change.rank_b or ""}"><td>{thumb_html(preview)}#{change.index} {escape(preview.label)}</td>'
            f"<td>{_rank_cell(change.rank_a)}</td><td>{_score_cell(_score_of(a, change.index))}</td>"
            f"<td>{_rank_cell(change.rank_b)}</td><td>{_score_cell(_score_of(b, change.index))}</td>"
            f'<td class="rr-mark rr-mark-{attr(change.mark)}">{MARK_SYMBOLS.get(change.mark, escape(change.mark))}</td></tr>'
        )
    head = (
        f"<tr><th>document</th><th>rank in {escape(a.version)}</th><th>score</th>"
        f"<th>rank in {escape(b.version)}</th><th>score</th><th>change</th></tr>"
    )
    meta = (
        f'<div class="rr-meta"><span data-testid="compare-a" data-version="{attr(a.version)}" data-ms="{a.latency_ms:.1f}">'
        f"A = <b>{escape(a.version)}</b> {a.latency_ms:.0f} ms</span> · "
        f'<span data-testid="compare-b" data-version="{attr(b.version)}" data-ms="{b.latency_ms:.1f}">'
        f"B = <b>{escape(b.version)}</b> {b.latency_ms:.0f} ms</span></div>"
    )
    return (
        f'<div class="rr-results rr-compare" data-stale="false"><div class="rr-stale-note">{STALE_NOTE}</div>{meta}'
        f'<div class="rr-table-wrap"><table class="rr-table" data-testid="compare" data-version-a="{attr(a.version)}"'
        f' data-version-b="{attr(b.version)}">{head}{"".join(rows)}</table></div></div>'
    )
