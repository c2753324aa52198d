"""Checks on client text that must fail as a 4xx naming the field, never deeper as a 500.

A JSON string may carry a lone surrogate (`"\\ud800"`), which no UTF-8 encoder accepts; a path may
carry a NUL or be longer than the operating system allows. Every front end runs these before the
text reaches hashing, tokenizers or the file system.
"""
from __future__ import annotations

import os

from reranker.errors import InputError

MAX_PATH_CHARS = 4096  # PATH_MAX on Linux, in UTF-8 bytes
MAX_NAME_CHARS = 255  # NAME_MAX: one path component, in bytes
SHOWN_CHARS = 120


def shown(value: str, limit: int = SHOWN_CHARS) -> str:
    """`repr(value)`, cut to about `limit` characters with the full length said: for error messages."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def check_text(value: str, what: str) -> None:
    """Refuse text that is not valid Unicode (a lone UTF-16 surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"{what} contains a lone surrogate U+{ord(value[exc.start]):04X} at character {exc.start}; "
            "send valid UTF-8 text"
        ) from None


def check_path(raw: str, what: str) -> None:
    """Refuse a path the file system would choke on: NUL, lone surrogates, over PATH_MAX or NAME_MAX."""
    if "\x00" in raw:
        raise InputError(f"{what} contains a NUL character at position {raw.index(chr(0))}; a path cannot")
    check_text(raw, what)
    size = len(raw.encode("utf-8"))
    if size > MAX_PATH_CHARS:
        raise InputError(f"{what} is {size} bytes long; the limit for a path is {MAX_PATH_CHARS}")
    longest = max((len(part.encode("utf-8")) for part in raw.split(os.sep)), default=0)
    if longest > MAX_NAME_CHARS:
        raise InputError(
            f"{what} has a file or folder name of {longest} bytes; the limit is {MAX_NAME_CHARS}"
        )
