"""HTML views styled by assets/ui.css, scoped to each view (app.py's mount sets no page CSS)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

CSS_PATH = Path(__file__).resolve().parent.parent / "assets" / "ui.css"
STYLE = CSS_PATH.read_text(encoding="utf-8")


def html_view(value: Any = None, elem_id: str | None = None) -> gr.HTML:
    return gr.HTML(value, elem_id=elem_id, css_template=STYLE, js_on_load=None)
