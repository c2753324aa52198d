"""The service facade shared by the REST API and the UI."""
from reranker.service.core import RerankService

__all__ = ["RerankService"]
