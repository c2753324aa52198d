"""Small files that decode to huge pixel counts, generated on the fly (issue 8, item 3)."""
from __future__ import annotations

import io

import av
import numpy as np
from PIL import Image


def png_bomb(side: int = 6000) -> bytes:
    """A side x side RGB PNG of a few hundred KB (flat colour with a gradient row)."""
    image = Image.new("RGB", (side, side), (30, 120, 200))
    image.paste(Image.linear_gradient("L").convert("RGB").resize((side, 8)), (0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=6)
    return out.getvalue()


def video_bomb(side: int = 3072, frames: int = 12, fps: int = 4) -> bytes:
    """A side x side H.264 clip, nearly static so it stays small (ultrafast, high CRF)."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
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
