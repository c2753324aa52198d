"""One engine per loaded model version: batching queue, score cache, warm-up."""
from reranker.engine.batcher import BatchQueue, Job
from reranker.engine.cache import ScoreCache, ScoreCacheStats, score_key
from reranker.engine.engine import Engine, EngineState, EngineStats

__all__ = [
    "BatchQueue",
    "Engine",
    "EngineState",
    "EngineStats",
    "Job",
    "ScoreCache",
    "ScoreCacheStats",
    "score_key",
]
