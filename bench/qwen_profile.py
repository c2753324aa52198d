"""Where the GPU time of QwenScorer.score goes (random weights of a real shape, 64 text pairs).

Prints, in one run: the wall time of score() per pipeline chunk; the CPU encode time; the GPU-only
time of the prefix and document passes (inputs already on the device); the same document pass
replayed as a CUDA graph (what launch overhead costs); the floor set by the matrix products alone;
the attention step alone (SDPA with mask + repeat_kv vs FlexAttention on packed documents); the
plain-batching baseline; and the profiler's top kernels.

    python bench/qwen_profile.py --tokenizer DIR [--shape 2b] [--top 25]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import torch  # noqa: E402

import qwen_gpu  # noqa: E402
from reranker.models.qwen3vl.scorer import QwenScorer, _to_device  # noqa: E402


def timed(fn, reps: int = 7) -> float:
    """Median seconds of fn() (synchronised), after one warm-up call."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--shape", default="2b")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--images", action="store_true", help="also profile 16 896x896 image documents")
    parser.add_argument("--images-only", action="store_true", help="profile the image documents only")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    log = qwen_gpu.log
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    model = qwen_gpu.build_model(args.shape, "cuda:0", torch.bfloat16)
    scorer = QwenScorer(model, tokenizer, model_id="p", name="p", max_batch_tokens=1 << 30)
    scorer.max_batch_size = 64
    scorer.warm_up()
    log(f"fused kernels compiled: {scorer.compiled.wait(300)}, compiled layers serve: {scorer._fast.fused}")  # noqa: SLF001
    pairs = qwen_gpu.text_pairs(scorer, tokenizer)
    fast = scorer._fast  # noqa: SLF001
    n = len(pairs)
    if args.images_only:
        image_profile(scorer, log, args.top)
        return

    for chunk in (16, 32, 64):
        scorer.pipeline_chunk = chunk
        seconds = timed(lambda: scorer.score(pairs), 7)
        log(f"score() wall, chunk {chunk:2d}: {seconds * 1e3:7.1f} ms = {n / seconds:6.1f} pairs/s")
    if fast.graphs is not None:
        log(f"prefix graphs captured: {sorted(fast.graphs._graphs)} {fast.graphs.failed}")  # noqa: SLF001
    if args.images:
        image_profile(scorer, log, args.top)
    plain = qwen_gpu.PlainBatching(scorer, AutoTokenizer.from_pretrained(args.tokenizer))
    seconds = timed(lambda: plain.score(pairs), 5)
    log(f"plain batching wall     : {seconds * 1e3:7.1f} ms = {n / seconds:6.1f} pairs/s")

    encoder = scorer._encoder  # noqa: SLF001
    seconds = timed(lambda: encoder.encode_all(pairs), 5)
    log(f"CPU encode_all(64)      : {seconds * 1e3:7.1f} ms")
    encoded = encoder.encode_all(pairs)
    seconds = timed(lambda: scorer._plan_prefix_batches(list(range(n)), encoded), 5)  # noqa: SLF001
    log(f"CPU plan + collate      : {seconds * 1e3:7.1f} ms")
    work = scorer._plan_prefix_batches(list(range(n)), encoded)  # noqa: SLF001
    (key, prefix_inputs, indices, batch), *_ = work
    batch = _to_device(batch, fast.device)
    doc_tokens = int((batch.last + 1).sum())
    log(f"prefix {prefix_inputs[0].shape[1]} tokens; documents {tuple(batch.input_ids.shape)} "
        f"({doc_tokens} real tokens, {batch.input_ids.numel() - doc_tokens} pads)")
    prefix = fast.prefix(*prefix_inputs)
    prefix_s = timed(lambda: fast.prefix(*prefix_inputs), 10)
    eager_s = timed(lambda: fast._prefix_pass(*prefix_inputs), 10)  # noqa: SLF001
    log(f"GPU prefix pass, layer by layer (no graph): {eager_s * 1e3:7.2f} ms")
    docs_s = timed(lambda: fast.documents(batch, prefix), 10)
    log(f"GPU prefix pass         : {prefix_s * 1e3:7.2f} ms")
    log(f"GPU document pass       : {docs_s * 1e3:7.2f} ms = {n / (docs_s + prefix_s):6.1f} pairs/s GPU-only")

    try:
        static = {}
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                fast.documents(batch, prefix)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static["out"] = fast.documents(batch, prefix)
        graph_s = timed(graph.replay, 10)
        log(f"GPU document pass, graph: {graph_s * 1e3:7.2f} ms (launch overhead {1e3 * (docs_s - graph_s):.2f} ms)")
    except Exception as exc:  # noqa: BLE001
        log(f"CUDA graph capture failed: {type(exc).__name__}: {exc}")

    layers = fast._layers  # noqa: SLF001
    x = torch.randn(doc_tokens, layers[0].input_layernorm.weight.shape[0], device="cuda", dtype=torch.bfloat16)

    def matmuls() -> None:
        for layer in layers:
            a, m = layer.self_attn, layer.mlp
            for lin in (a.q_proj, a.k_proj, a.v_proj):
                lin(x)
            a.o_proj(torch.empty(doc_tokens, a.o_proj.in_features, device="cuda", dtype=torch.bfloat16))
            g = m.gate_proj(x)
            m.up_proj(x)
            m.down_proj(g)
    mm_s = timed(matmuls, 5)
    log(f"matmul floor ({doc_tokens} tokens, all layers): {mm_s * 1e3:7.2f} ms")

    attention_bench(fast, batch, prefix, log)

    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fast.prefix(*prefix_inputs)
        fast.documents(batch, prefix)
        torch.cuda.synchronize()
    log(prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.top, max_name_column_width=60))


def image_profile(scorer, log, top: int) -> None:
    """16 image documents: wall per batch size, vision tower vs language model, top kernels."""
    from torch.profiler import ProfilerActivity, profile, record_function

    busy_fraction(scorer, qwen_gpu.image_pairs(), log)
    pairs = qwen_gpu.image_pairs()[:16]
    for batch in (8, 16):
        scorer.max_batch_size = batch
        seconds = timed(lambda: scorer.score(pairs), 3)
        log(f"images: score() batch {batch}: {seconds * 1e3:7.1f} ms = {len(pairs) / seconds:6.1f} pairs/s")
    encoded = scorer.encode(pairs)
    seconds = timed(lambda: scorer.encode(pairs), 3)
    log(f"images: CPU encode (preprocess 16 images): {seconds * 1e3:7.1f} ms")
    inner = scorer._inner  # noqa: SLF001
    fast = scorer._fast  # noqa: SLF001
    from reranker.models.qwen3vl.fastpath import _visual_features
    from reranker.models.qwen3vl.visiontower import VisionOps, device_patches, stacked_visuals
    visuals = [v for e in encoded for v in e.images[e.query_images:]]
    seconds = timed(lambda: stacked_visuals(visuals, pin=True), 3)
    log(f"images: CPU stack + pin 16 frames: {seconds * 1e3:7.1f} ms")
    flat = stacked_visuals(visuals, pin=True)
    seconds = timed(lambda: device_patches(flat.to(fast.device, non_blocking=True), visuals), 5)
    log(f"images: copy + patchify on the GPU: {seconds * 1e3:7.2f} ms")
    patches = device_patches(flat.to(fast.device), visuals)
    grids = [v.grid_thw for v in visuals]
    seconds = timed(lambda: _visual_features(inner.get_image_features, visuals, patches), 3)
    log(f"images: HF vision tower, 16 images: {seconds * 1e3:7.1f} ms")
    if fast.vision is not None:
        seconds = timed(lambda: fast.vision.features(patches, grids, VisionOps()), 3)
        log(f"images: our tower, eager, 16 images: {seconds * 1e3:7.1f} ms")
        seconds = timed(lambda: fast.vision.features(patches, grids, fast.ops.vision), 3)
        log(f"images: our tower, {'compiled' if fast.fused else 'eager'} ops, 16 images: {seconds * 1e3:7.1f} ms")
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fast.vision.features(patches, grids, fast.ops.vision)
            torch.cuda.synchronize()
        log(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=60))
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        with record_function("score16"):
            scorer.score(pairs)
        torch.cuda.synchronize()
    log(prof.key_averages().table(sort_by="cuda_time_total", row_limit=top, max_name_column_width=60))


def busy_fraction(scorer, pairs, log) -> None:
    """score(pairs) at batch 16 under a CUDA-only profiler: wall time against the union of kernel
    intervals (how long the GPU sat idle between kernels), and the longest idle gaps."""
    from torch.profiler import ProfilerActivity, profile

    scorer.max_batch_size = 16
    timed(lambda: scorer.score(pairs), 2)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        started = time.perf_counter()
        scorer.score(pairs)
        torch.cuda.synchronize()
        wall = time.perf_counter() - started
    spans = sorted((e.time_range.start, e.time_range.end) for e in prof.events()
                   if e.device_type == torch.autograd.DeviceType.CUDA and e.time_range.end > e.time_range.start)
    if not spans:
        log("busy fraction: no kernel events")
        return
    busy, gaps, end = 0.0, [], spans[0][0]
    start = spans[0][0]
    for a, b in spans:
        if a > end:
            gaps.append((a - end, end - spans[0][0]))
            busy += end - start
            start = a
        end = max(end, b)
    busy += end - start
    span = spans[-1][1] - spans[0][0]
    gaps.sort(reverse=True)
    log(f"images x{len(pairs)}: wall {wall * 1e3:.1f} ms, first-to-last kernel {span / 1e3:.1f} ms, "
        f"GPU busy {busy / 1e3:.1f} ms ({busy / span:.1%} of the kernel span); idle gaps > 0.1 ms: "
        f"{sum(g for g, _ in gaps if g > 100) / 1e3:.1f} ms in {sum(1 for g, _ in gaps if g > 100)}; longest (ms @ ms): "
        + ", ".join(f"{g / 1e3:.1f}@{at / 1e3:.0f}" for g, at in gaps[:8]))


def attention_bench(fast, batch, prefix, log) -> None:
    """One layer's attention, times the layer count: today's SDPA (bool mask, K/V concatenated and
    repeated) against FlexAttention over the packed documents (no pads, GQA native)."""
    rows, length = batch.input_ids.shape
    heads = fast._layers[0].self_attn.config.num_attention_heads  # noqa: SLF001
    kv_heads = prefix.keys[0].shape[1]
    groups = heads // kv_heads
    dim = fast._head_dim  # noqa: SLF001
    past = prefix.length
    layers = len(fast._layers)  # noqa: SLF001
    q = torch.randn(rows, heads, length, dim, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(rows, kv_heads, length, dim, device="cuda", dtype=torch.bfloat16)
    pk = prefix.keys[0]
    mask = torch.ones((length, past + length), dtype=torch.bool, device="cuda").tril(past)

    def sdpa() -> None:
        keys = torch.cat([pk.expand(rows, -1, -1, -1), k], dim=2).repeat_interleave(groups, dim=1)
        torch.nn.functional.scaled_dot_product_attention(q, keys, keys, attn_mask=mask)
    log(f"attention, SDPA + mask + repeat, x{layers}: {timed(sdpa, 5) * 1e3 * layers:7.2f} ms")

    def sdpa_gqa() -> None:
        keys = torch.cat([pk.expand(rows, -1, -1, -1), k], dim=2)
        torch.nn.functional.scaled_dot_product_attention(q, keys, keys, attn_mask=mask, enable_gqa=True)
    try:
        log(f"attention, SDPA + mask, enable_gqa, x{layers}: {timed(sdpa_gqa, 5) * 1e3 * layers:7.2f} ms")
    except Exception as exc:  # noqa: BLE001
        log(f"SDPA enable_gqa failed: {exc}")
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        lengths = (batch.last + 1).tolist()
        total = sum(lengths)
        doc = torch.cat([torch.full((n,), i, dtype=torch.int32) for i, n in enumerate(lengths)]).cuda()
        start = torch.cat([torch.full((n,), s, dtype=torch.int32)
                           for s, n in zip([sum(lengths[:i]) for i in range(len(lengths))], lengths)]).cuda()
        doc_kv = torch.cat([torch.full((past,), -1, dtype=torch.int32, device="cuda"), doc])

        def mask_mod(b, h, q_idx, kv_idx):
            own = (doc_kv[kv_idx] == doc[q_idx]) & (kv_idx - past <= q_idx) & (kv_idx - past >= start[q_idx])
            return (kv_idx < past) | own
        flex = torch.compile(flex_attention, dynamic=False)
        qp = torch.randn(1, heads, total, dim, device="cuda", dtype=torch.bfloat16)
        kp = torch.randn(1, kv_heads, past + total, dim, device="cuda", dtype=torch.bfloat16)
        started = time.perf_counter()
        block = create_block_mask(mask_mod, 1, None, total, past + total, device="cuda")
        log(f"flex block mask built in {1e3 * (time.perf_counter() - started):.1f} ms")
        log(f"attention, flex packed (block mask), x{layers}: "
            f"{timed(lambda: flex(qp, kp, kp, block_mask=block, enable_gqa=True), 5) * 1e3 * layers:7.2f} ms")
        block_s = timed(lambda: create_block_mask(mask_mod, 1, None, total, past + total, device="cuda"), 5)
        log(f"flex block mask per batch: {block_s * 1e3:.2f} ms")
    except Exception as exc:  # noqa: BLE001
        log(f"flex attention failed: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
