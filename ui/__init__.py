"""The Gradio console: one module per tab; callbacks only call the service."""
from ui.app import build_ui

__all__ = ["build_ui"]
