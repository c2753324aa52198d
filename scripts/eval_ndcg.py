"""Print NDCG@k of model directories on the labelled example set.

    .venv/bin/python scripts/eval_ndcg.py models/mini-v1 models/mini-v2 [--set FILE] [--per-query]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from reranker.evaluation import evaluate, load_labelled_set, media_decoders  # noqa: E402
from reranker.models.loading import load_model  # noqa: E402
from reranker.settings import Limits  # noqa: E402

DEFAULT_SET = Path(__file__).resolve().parents[1] / "assets" / "examples" / "labelled_set.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="model directories")
    parser.add_argument("--set", type=Path, default=DEFAULT_SET, help="labelled set JSON file")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    parser.add_argument("--per-query", action="store_true", help="also print every query's NDCG")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    labelled = load_labelled_set(args.set)
    decoders = media_decoders(Limits())
    for directory in args.models:
        started = time.perf_counter()
        loaded = load_model(directory, device_pref=args.device)
        loaded_s = time.perf_counter() - started
        started = time.perf_counter()
        result = evaluate(loaded.model, labelled, decoders)
        scored_s = time.perf_counter() - started
        print(
            f"{result.model_id}: NDCG@{result.k} = {result.mean_ndcg:.4f} over {len(result.per_query)} "
            f"queries (load {loaded_s:.1f} s, evaluation {scored_s:.1f} s, {loaded.model.info.device})"
        )
        if args.per_query:
            for query_id, value in result.per_query.items():
                print(f"  {query_id:20s} {value:.4f}")
        loaded.model.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
