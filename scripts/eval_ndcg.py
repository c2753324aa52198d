"""Print NDCG@k of model directories on the labelled example set.

    .venv/bin/python scripts/eval_ndcg.py models/mini-v1 models/mini-v2 [--set FILE] [--per-query]
        [--split dev|heldout|all] [--threads N]

Options are chosen on the dev half of the queries only; the held-out half checks that a gain is
not an artefact of that choice. The halves alternate over the sorted query ids (dev: 1st, 3rd, ...).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from reranker.evaluation import evaluate, load_labelled_set, media_decoders  # noqa: E402
from reranker.models.loading import load_model  # noqa: E402
from reranker.settings import Limits  # noqa: E402

DEFAULT_SET = Path(__file__).resolve().parents[1] / "assets" / "examples" / "labelled_set.json"
SPLITS = ("dev", "heldout", "all")


def split_query_ids(query_ids: Iterable[str], split: str) -> list[str]:
    """The query ids of one half of the set: sorted ids alternate dev, heldout, dev, ..."""
    ordered = sorted(query_ids)
    if split == "all":
        return ordered
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return ordered[0::2] if split == "dev" else ordered[1::2]


def split_mean(per_query: Mapping[str, float], split: str) -> float:
    """Mean NDCG over the queries of one split."""
    chosen = split_query_ids(per_query, split)
    return sum(per_query[query_id] for query_id in chosen) / len(chosen)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="model directories")
    parser.add_argument("--set", type=Path, default=DEFAULT_SET, help="labelled set JSON file")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    parser.add_argument("--per-query", action="store_true", help="also print every query's NDCG")
    parser.add_argument("--split", choices=SPLITS, default="all", help="which queries to average")
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
        chosen = split_query_ids(result.per_query, args.split)
        print(
            f"{result.model_id}: NDCG@{result.k} = {split_mean(result.per_query, args.split):.4f} over "
            f"{len(chosen)} queries ({args.split}; load {loaded_s:.1f} s, evaluation {scored_s:.1f} s, "
            f"{loaded.model.info.device})"
        )
        if args.per_query:
            for query_id in chosen:
                print(f"  {query_id:20s} {result.per_query[query_id]:.4f}")
        loaded.model.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
