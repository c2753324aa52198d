"""The model layer: a Reranker protocol and its backends. Knows nothing of HTTP, UI or traffic."""
