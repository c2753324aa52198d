"""The resource attacks of issue 8 against a real `app.py`, bounded in time; prints one table.

    .venv/bin/python bench/abuse.py [--checkout DIR] [--label NAME] [--bursts 60,200]
        [--idle-sockets 3000] [--video-side 4096] [--video-frames 16] [--png-side 6000]

--checkout runs the app.py of another tree (e.g. a worktree of the old main) with this venv, so
the same script prints the "before" and the "after" figures. Phases, each with a fresh server
(mini-v1, a temp data dir, a free 127.0.0.1 port, default settings, killed by its pid):

1. media: one /v1/rerank with a PNG bomb (png-side^2, RGB, ~100 KB), then one with an H.264 bomb
   (video-side^2, video-frames frames at 1 fps, ~100 KB-1 MB), both as data: URIs. The server's
   RSS is sampled every 10 ms from /proc: peak growth during the request and growth still held
   1 s after it.
2. idle connections: --idle-sockets TCP connections that send nothing. Reports the server's open
   fds, /healthz latency with them open, and the fds 15 s later (a header timeout should have
   closed them). Scaled down from the 21,000 of the issue to what a shared 2-core box takes.
3. one server per burst size: N concurrent 100-document requests (40 words a document, no cache
   hits); /healthz is probed every 0.25 s for 45 s by a separate process (so the probe does not
   wait for the client's own GIL). Reports the worst and median liveness latency and the status
   codes, with a 45 s client timeout (a request still running then counts as "timeout"; the client
   then closes its connection).
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["red", "blue", "green", "car", "dog", "tree", "house", "river", "mountain", "city", "night", "cat", "bird", "boat", "road", "field", "window", "bridge", "forest", "snow", "lake", "garden", "street", "train", "market"]
CLIENT_TIMEOUT_S = 45.0
READY_TIMEOUT_S = 300.0


class Server:
    def __init__(self, checkout: Path, folder: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"app-{self.port}.log"
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
               "RERANKER_ADMIN_TOKEN": "bench-token"}
        command = [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(self.port),
                   "--data-dir", str(folder / f"data-{self.port}"), "--model", "models/mini-v1"]
        with self.log.open("w") as sink:
            self.process = subprocess.Popen(command, cwd=checkout, env=env, stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py exited:\n{self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("app.py not ready")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)


def png_bomb(side: int) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (side, side), (30, 120, 200))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=6)
    return out.getvalue()


def video_bomb(side: int, frames: int) -> bytes:
    import av
    import numpy as np

    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "40"}
        base = np.zeros((side, side, 3), np.uint8)
        base[:, :, 0] = (np.arange(side) % 256)[None, :]
        for i in range(frames):
            base[:16, :, 1] = i * 8 % 256
            for packet in stream.encode(av.VideoFrame.from_ndarray(base, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def media_request(server: Server, document: dict[str, Any]) -> dict[str, Any]:
    """Peak and held RSS growth of the server over one request carrying `document`."""
    baseline = server.rss_mib()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], server.rss_mib())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        response = httpx.post(f"{server.url}/v1/rerank", json={"query": "a blue picture", "documents": [document]},
                              timeout=300)
        status = str(response.status_code)
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    time.sleep(1.0)
    return {"status": status, "seconds": round(seconds, 1), "peak_mib": round(peak[0] - baseline),
            "held_mib": round(server.rss_mib() - baseline)}


def healthz_latency(url: str, timeout: float = CLIENT_TIMEOUT_S) -> float:
    started = time.monotonic()
    try:
        httpx.get(f"{url}/healthz", timeout=timeout).raise_for_status()
    except httpx.HTTPError:
        return float("inf")
    return time.monotonic() - started


def idle_connections(server: Server, count: int) -> dict[str, Any]:
    before = server.fds()
    sockets = []
    for _ in range(count):
        try:
            sockets.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        except OSError:
            break
    time.sleep(1.0)
    during = server.fds()
    live = healthz_latency(server.url, timeout=30)
    time.sleep(15.0)
    later = server.fds()
    closed = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            closed += sock.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        sock.close()
    return {"opened": len(sockets), "fds_before": before, "fds_with_idle": during, "healthz_s": _s(live),
            "fds_15s_later": later, "closed_by_server": closed}


def heavy_body(seed: int) -> bytes:
    rnd = random.Random(seed)
    body = {"query": " ".join(rnd.choice(WORDS) for _ in range(12)),
            "documents": [" ".join(rnd.choice(WORDS) for _ in range(40)) + f" {seed}-{i}" for i in range(100)]}
    return json.dumps(body).encode()


PROBE = """
import json, sys, time, httpx
url, seconds = sys.argv[1], float(sys.argv[2])
out, end = [], time.monotonic() + seconds
while time.monotonic() < end:
    t = time.monotonic()
    try:
        httpx.get(url + "/healthz", timeout=max(1.0, end - t + 1)).raise_for_status()
        out.append(time.monotonic() - t)
    except httpx.HTTPError:
        out.append(None)
    time.sleep(0.25)
print(json.dumps(out))
"""


def burst(server: Server, count: int) -> dict[str, Any]:
    bodies = [heavy_body(seed) for seed in range(count)]
    codes: Counter[str] = Counter()
    lock = threading.Lock()

    def post(body: bytes) -> None:
        try:
            code = str(httpx.post(f"{server.url}/v1/rerank", content=body, timeout=CLIENT_TIMEOUT_S,
                                  headers={"content-type": "application/json"}).status_code)
        except httpx.TimeoutException:
            code = "timeout"
        except httpx.HTTPError as exc:
            code = type(exc).__name__
        with lock:
            codes[code] += 1

    started = time.monotonic()
    probe = subprocess.Popen([sys.executable, "-c", PROBE, server.url, str(CLIENT_TIMEOUT_S)],
                             stdout=subprocess.PIPE, text=True)
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(post, bodies))
    measured = json.loads(probe.communicate(timeout=CLIENT_TIMEOUT_S * 3)[0] or "[]")
    probes = [float("inf") if p is None else p for p in measured]
    finite = [p for p in probes if p != float("inf")]
    return {"requests": count, "codes": dict(sorted(codes.items())), "probes": len(probes),
            "healthz_p50_s": _s(statistics.median(probes)) if probes else "-",
            "healthz_max_s": _s(max(probes)) if probes else "-", "healthz_failed": len(probes) - len(finite),
            "wall_s": round(time.monotonic() - started, 1)}


def _s(value: float) -> str:
    return "fail" if value == float("inf") else f"{value:.3f}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", type=Path, default=ROOT, help="tree whose app.py is run (default: this one)")
    parser.add_argument("--label", default=None)
    parser.add_argument("--bursts", default="60,200")
    parser.add_argument("--idle-sockets", type=int, default=3000)
    parser.add_argument("--png-side", type=int, default=6000)
    parser.add_argument("--video-side", type=int, default=4096)
    parser.add_argument("--video-frames", type=int, default=16)
    parser.add_argument("--phases", default="media,idle,burst")
    args = parser.parse_args(argv)
    label = args.label or str(args.checkout)
    phases = set(args.phases.split(","))
    print(f"# abuse bench: {label}  (cpus={os.cpu_count()}, fd limit={_fd_limit()})", flush=True)
    with tempfile.TemporaryDirectory(prefix="abuse-") as tmp:
        folder = Path(tmp)
        if phases & {"media", "idle"}:
            server = Server(args.checkout, folder)
            try:
                if "media" in phases:
                    png = png_bomb(args.png_side)
                    print(f"png bomb {args.png_side}x{args.png_side}, {len(png)} bytes: "
                          f"{media_request(server, {'image': uri('image/png', png)})}", flush=True)
                    video = video_bomb(args.video_side, args.video_frames)
                    print(f"video bomb {args.video_side}x{args.video_side}, {args.video_frames} frames at 1 fps, "
                          f"{len(video)} bytes: {media_request(server, {'video': uri('video/mp4', video)})}", flush=True)
                if "idle" in phases:
                    print(f"idle connections: {idle_connections(server, args.idle_sockets)}", flush=True)
            finally:
                server.kill()
        if "burst" in phases:
            for count in (int(n) for n in args.bursts.split(",") if n):
                server = Server(args.checkout, folder)
                try:
                    print(f"burst of {count} x 100-document requests: {burst(server, count)}", flush=True)
                finally:
                    server.kill()
    return 0


def _fd_limit() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
