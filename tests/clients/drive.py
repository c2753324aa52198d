"""Run by .venv-clients/bin/python (NOT the app's venv): one third-party client against a server.

    python drive.py URL SCENARIO   ->  prints one JSON line: what the client library returned

The client libraries pin versions that clash with the app's, so the test process starts this
script in their own venv and reads its output.
"""
from __future__ import annotations

import json
import sys

DOCS = ["a rocket launching into space", "a tabby cat resting", "a cup of espresso"]
KEY = "not-checked"  # the public rerank routes take no key; clients insist on sending one


def cohere_v2(url: str) -> object:
    import cohere

    reply = cohere.ClientV2(api_key=KEY, base_url=url).rerank(
        model="rerank-v3.5", query="a cat", documents=DOCS, top_n=2)
    return {"indices": [r.index for r in reply.results], "scores": [r.relevance_score for r in reply.results],
            "search_units": reply.meta.billed_units.search_units, "input_tokens": reply.meta.tokens.input_tokens}


def cohere_v2_max_tokens(url: str) -> object:
    """Cohere v2's max_tokens_per_doc, as the client library sends it."""
    import cohere

    client = cohere.ClientV2(api_key=KEY, base_url=url)
    docs = ["a cup of espresso beside a tabby cat"]
    whole = client.rerank(model="rerank-v3.5", query="a cat", documents=docs)
    cut = client.rerank(model="rerank-v3.5", query="a cat", documents=docs, max_tokens_per_doc=6)
    return {"whole": [whole.results[0].relevance_score, whole.meta.tokens.input_tokens],
            "cut": [cut.results[0].relevance_score, cut.meta.tokens.input_tokens]}


def cohere_v1(url: str) -> object:
    import cohere

    reply = cohere.Client(api_key=KEY, base_url=url).rerank(
        model="rerank-english-v3.0", query="a cat", documents=DOCS, top_n=2, return_documents=True)
    return {"indices": [r.index for r in reply.results], "documents": [r.document.text for r in reply.results]}


def langchain_cohere(url: str) -> object:
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    reranker = CohereRerank(cohere_api_key=KEY, base_url=url, model="rerank-v3.5", top_n=2)
    kept = reranker.compress_documents([Document(page_content=d) for d in DOCS], "a cat")
    return {"texts": [d.page_content for d in kept], "scores": [d.metadata["relevance_score"] for d in kept]}


def _nodes() -> list:
    from llama_index.core.schema import NodeWithScore, TextNode

    return [NodeWithScore(node=TextNode(text=d)) for d in DOCS]


def llamaindex_cohere(url: str) -> object:
    from llama_index.postprocessor.cohere_rerank import CohereRerank

    reranker = CohereRerank(api_key=KEY, base_url=url, top_n=2)
    kept = reranker.postprocess_nodes(_nodes(), query_str="a cat")
    return {"texts": [n.node.get_content() for n in kept], "scores": [n.score for n in kept]}


def llamaindex_jina(url: str) -> object:
    from llama_index.postprocessor.jinaai_rerank import JinaRerank

    reranker = JinaRerank(api_key=KEY, base_url=url, top_n=2)  # model "jina-reranker-v1-base-en"
    kept = reranker.postprocess_nodes(_nodes(), query_str="a cat")
    return {"texts": [n.node.get_content() for n in kept], "scores": [n.score for n in kept]}


def llamaindex_jina_error(url: str) -> object:
    """A refused request must reach the user as the client's own error, not a KeyError."""
    from llama_index.postprocessor.jinaai_rerank import JinaRerank

    try:
        JinaRerank(api_key=KEY, base_url=url, top_n=2).postprocess_nodes(_nodes(), query_str="   ")
    except Exception as exc:  # noqa: BLE001 - we report whatever the client raised
        return {"raised": type(exc).__name__, "message": str(exc)}
    return {"raised": None}


SCENARIOS = {f.__name__: f for f in (cohere_v2, cohere_v2_max_tokens, cohere_v1, langchain_cohere, llamaindex_cohere, llamaindex_jina,
                                     llamaindex_jina_error)}

if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[2]](sys.argv[1])))
