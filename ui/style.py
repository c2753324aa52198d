"""Page styling: assets/ui.css (Gradio theme variables, so light and dark mode both read well) is
loaded once for the whole page by the mount (`page_options`); HTML views carry only classes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

ASSETS = Path(__file__).resolve().parent.parent / "assets"
CSS_PATH = ASSETS / "ui.css"
FAVICON_PATH = ASSETS / "favicon.svg"


def page_options() -> dict[str, Any]:
    """Keyword arguments for gr.mount_gradio_app: the page's stylesheet and favicon."""
    return {"css_paths": [str(CSS_PATH)], "favicon_path": str(FAVICON_PATH)}


def html_view(value: Any = None, elem_id: str | None = None) -> gr.HTML:
    return gr.HTML(value, elem_id=elem_id, js_on_load=None)
