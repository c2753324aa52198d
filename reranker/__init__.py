"""Multimodal reranker service with hot model updates."""
