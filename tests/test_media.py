"""Media layer: sources and their limits, image decoding, video decoding and sampling, the cache.

Every image and video here is made by the test itself (pillow, PyAV).
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
import zlib
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from reranker.content import ImageItem
from reranker.errors import ForbiddenPath, MediaError, PayloadTooLarge
from reranker.media import (
    MediaDecoder,
    MediaResolver,
    decode_image,
    decode_video,
    sample_count,
    sample_indices,
    video_from_frames,
)
from reranker.settings import Limits

LIMITS = Limits()


def png(image: Image.Image, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", **params)
    return out.getvalue()


def mp4(frames: int, fps: int, size: tuple[int, int] = (64, 48), codec: str = "libx264") -> bytes:
    """An H.264 (or other codec) mp4 whose frame i is a flat grey of level 8*i % 256."""
    width, height = size
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            grey = np.full((height, width, 3), (8 * i) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(grey, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


@pytest.fixture(scope="module")
def clip() -> bytes:
    return mp4(frames=30, fps=10)


# --- sources -------------------------------------------------------------------------------


def test_raw_bytes_pass_and_oversize_is_refused() -> None:
    resolver = MediaResolver([], replace(LIMITS, max_media_bytes=10))
    assert resolver.read(b"0123456789", "documents[0].image") == b"0123456789"
    with pytest.raises(PayloadTooLarge, match=r"documents\[1\]\.image.*max_media_bytes=10"):
        resolver.read(b"0123456789A", "documents[1].image")


def test_data_uri_decodes_and_bad_base64_names_the_item() -> None:
    resolver = MediaResolver([], LIMITS)
    uri = "data:image/png;base64," + base64.b64encode(b"hello").decode()
    assert resolver.read(uri, "query.image") == b"hello"
    with pytest.raises(MediaError, match=r"documents\[3\]\.image.*base64"):
        resolver.read("data:image/png;base64,@@not base64@@", "documents[3].image")
    with pytest.raises(MediaError, match=r"query\.video.*base64"):
        resolver.read("data:video/mp4,plain-text", "query.video")


def test_data_uri_over_the_limit_is_refused_before_decoding() -> None:
    resolver = MediaResolver([], replace(LIMITS, max_media_bytes=100))
    uri = "data:image/png;base64," + base64.b64encode(b"x" * 1000).decode()
    with pytest.raises(PayloadTooLarge, match=r"documents\[0\]\.image"):
        resolver.read(uri, "documents[0].image")


@pytest.mark.parametrize("url", ["http://example.com/a.png", "HTTPS://example.com/a.png", "ftp://host/a"])
def test_urls_are_refused(url: str, tmp_path: Path) -> None:
    resolver = MediaResolver([tmp_path], LIMITS)
    with pytest.raises(MediaError, match=r"documents\[2\]\.image.*not supported"):
        resolver.read(url, "documents[2].image")


def test_paths_refused_when_no_folder_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"data")
    with pytest.raises(ForbiddenPath, match=r"query\.image.*--media-dir"):
        MediaResolver([], LIMITS).read(str(tmp_path / "a.png"), "query.image")


def test_paths_inside_allowed_folder_are_read(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(b"data")
    resolver = MediaResolver([tmp_path], LIMITS)
    assert resolver.read(str(tmp_path / "sub" / "a.png"), "x") == b"data"
    assert resolver.read("sub/a.png", "x") == b"data"
    assert resolver.read("file://" + str(tmp_path / "sub" / "a.png"), "x") == b"data"


def test_paths_escaping_the_folder_are_forbidden(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "media", tmp_path / "secret"
    allowed.mkdir()
    outside.mkdir()
    (outside / "key.txt").write_bytes(b"secret")
    os.symlink(outside / "key.txt", allowed / "link.png")
    resolver = MediaResolver([allowed], LIMITS)
    for ref in (str(outside / "key.txt"), "../secret/key.txt", str(allowed / "link.png"), "link.png"):
        with pytest.raises(ForbiddenPath, match=r"documents\[5\]\.image"):
            resolver.read(ref, "documents[5].image")


def test_missing_and_oversized_files(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"x" * 101)
    resolver = MediaResolver([tmp_path], replace(LIMITS, max_media_bytes=100))
    with pytest.raises(MediaError, match=r"query\.image.*does not exist"):
        resolver.read("nope.png", "query.image")
    with pytest.raises(PayloadTooLarge, match=r"query\.image.*101 bytes"):
        resolver.read("big.bin", "query.image")


# --- images --------------------------------------------------------------------------------


def test_rgb_png_decodes_with_sha256_digest() -> None:
    data = png(Image.new("RGB", (40, 30), (10, 20, 30)))
    item = decode_image(data, LIMITS, "query.image")
    assert item.size == (40, 30) and item.image.mode == "RGB"
    assert item.image.getpixel((5, 5)) == (10, 20, 30)
    assert item.digest == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_pixels_are_flattened_onto_white(mode: str) -> None:
    if mode == "RGBA":
        image = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
        image.putpixel((0, 0), (255, 0, 0, 0))
        data, opaque = png(image), (255, 0, 0)
    elif mode == "LA":
        image = Image.new("LA", (8, 8), (50, 255))
        image.putpixel((0, 0), (50, 0))
        data, opaque = png(image), (50, 50, 50)
    else:
        image = Image.new("P", (8, 8), 1)
        image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
        image.putpixel((0, 0), 0)
        data, opaque = png(image, transparency=0), (0, 0, 255)
    item = decode_image(data, LIMITS, "documents[0].image")
    assert item.image.mode == "RGB"
    assert item.image.getpixel((0, 0)) == (255, 255, 255)
    assert item.image.getpixel((4, 4)) == opaque


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 20, 20))  # white left half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif, quality=95)
    item = decode_image(out.getvalue(), LIMITS, "query.image")
    assert item.size == (20, 40)
    assert item.image.getpixel((10, 5))[0] > 200  # the white half is now on top
    assert item.image.getpixel((10, 35))[0] < 50


def test_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    data = png(Image.new("RGB", (100, 100)))
    with pytest.raises(MediaError, match=r"documents\[1\]\.image.*100x100.*max_image_pixels=5000"):
        decode_image(data, replace(LIMITS, max_image_pixels=5000), "documents[1].image")
    # headers claiming huge sizes with no pixel data behind them: refused by size, not decoded
    with pytest.raises(MediaError, match=r"query\.image.*10000x5000.*max_image_pixels=40000000"):
        decode_image(_png_claiming(10_000, 5_000), LIMITS, "query.image")
    with pytest.raises(MediaError, match=r"query\.image.*too large.*max_image_pixels"):
        decode_image(_png_claiming(100_000, 100_000), LIMITS, "query.image")


def _png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header (with a valid CRC) says it is width x height."""
    data = bytearray(png(Image.new("1", (1, 1))))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def test_undecodable_and_truncated_images_name_the_item() -> None:
    with pytest.raises(MediaError, match=r"documents\[7\]\.image.*not a decodable image"):
        decode_image(b"definitely not an image", LIMITS, "documents[7].image")
    data = png(Image.effect_noise((64, 64), 50).convert("RGB"))
    with pytest.raises(MediaError, match=r"documents\[8\]\.image"):
        decode_image(data[: len(data) // 2], LIMITS, "documents[8].image")


# --- video sampling ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "fps", "expected"),
    [
        (300, 30.0, 10),  # 10 s at 1 fps
        (330, 30.0, 10),  # 11 s -> rounded down to even
        (3000, 30.0, 64),  # 100 s -> capped at max_video_frames
        (30, 30.0, 4),  # 1 s -> raised to min_video_frames
        (3, 30.0, 2),  # never more than the file has, still even
        (5, 1.0, 4),
    ],
)
def test_sample_count_follows_smart_nframes(total: int, fps: float, expected: int) -> None:
    assert sample_count(total, fps, LIMITS) == expected


def test_sample_indices_are_rounded_linspace() -> None:
    assert sample_indices(30, 4) == (0, 10, 19, 29)
    assert sample_indices(10, 10) == tuple(range(10))
    assert sample_indices(100, 6) == (0, 20, 40, 59, 79, 99)


# --- video decoding ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_h264_clip_is_sampled_at_1_fps(clip: bytes, backend: str) -> None:
    video = decode_video(clip, LIMITS, "documents[0].video", backends=(backend,))
    assert len(video.frames) == 4  # 3 s at 1 fps -> raised to 4
    assert video.timestamps == pytest.approx((0.0, 1.0, 1.9, 2.9))
    assert video.duration == pytest.approx(3.0) and video.source_fps == pytest.approx(10.0)
    assert video.frames[0].shape == (48, 64, 3) and video.frames[0].dtype == np.uint8
    levels = [int(frame[24, 32].mean()) for frame in video.frames]
    assert levels == pytest.approx([0, 80, 152, 232], abs=4)  # frames 0, 10, 19, 29
    assert video.digest == hashlib.sha256(clip).hexdigest()


def test_decord_and_pyav_agree(clip: bytes) -> None:
    by_decord = decode_video(clip, LIMITS, "v", backends=("decord",))
    by_pyav = decode_video(clip, LIMITS, "v", backends=("pyav",))
    assert by_decord.timestamps == by_pyav.timestamps
    for a, b in zip(by_decord.frames, by_pyav.frames):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def test_av1_falls_back_to_pyav() -> None:
    data = mp4(frames=12, fps=4, size=(64, 64), codec="libsvtav1")
    with pytest.raises(MediaError, match="not a decodable video"):  # decord alone cannot read AV1
        decode_video(data, LIMITS, "v", backends=("decord",))
    video = decode_video(data, LIMITS, "query.video")
    assert len(video.frames) == 4
    assert video.timestamps == pytest.approx((0.0, 1.0, 1.75, 2.75))  # frames 0, 4, 7, 11


def test_corrupt_truncated_and_non_video_are_refused(clip: bytes) -> None:
    with pytest.raises(MediaError, match=r"documents\[2\]\.video.*not a decodable video") as caught:
        decode_video(clip[: len(clip) // 2], LIMITS, "documents[2].video")
    assert "decord" not in str(caught.value) and "pyav" not in str(caught.value).lower()  # no decoder internals
    with pytest.raises(MediaError, match=r"documents\[3\]\.video.*not a decodable video"):
        decode_video(b"\x00\x01 this is no video" * 50, LIMITS, "documents[3].video")
    with pytest.raises(MediaError, match=r"documents\[4\]\.video"):
        decode_video(png(Image.new("RGB", (8, 8))), LIMITS, "documents[4].video")


def test_over_long_video_is_refused() -> None:
    long_clip = mp4(frames=20, fps=1, size=(16, 16))  # 20 s, tiny
    with pytest.raises(MediaError, match=r"query\.video.*20\.0 s.*max_video_seconds=10"):
        decode_video(long_clip, replace(LIMITS, max_video_seconds=10), "query.video")
    assert len(decode_video(long_clip, LIMITS, "query.video").frames) == 20


def test_video_frame_pixels_are_limited(clip: bytes) -> None:
    with pytest.raises(MediaError, match=r"64x48.*max_image_pixels=1000"):
        decode_video(clip, replace(LIMITS, max_image_pixels=1000), "v")


def test_one_frame_video_is_refused() -> None:
    with pytest.raises(MediaError, match=r"query\.video.*1 frame"):
        decode_video(mp4(frames=1, fps=10), LIMITS, "query.video")


# --- videos from frames --------------------------------------------------------------------


def _frames(count: int, size: tuple[int, int] = (8, 6)) -> list[ImageItem]:
    return [ImageItem(Image.new("RGB", size, (i, i, i)), digest=f"{i:064x}") for i in range(count)]


def test_frame_list_is_padded_to_even_and_timed_at_2_fps() -> None:
    video = video_from_frames(_frames(5), LIMITS, "documents[0].video")
    assert len(video.frames) == 6
    assert [int(f[0, 0, 0]) for f in video.frames] == [0, 1, 2, 3, 4, 4]
    assert video.timestamps == (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)
    assert video.frames[0].shape == (6, 8, 3)


def test_long_frame_list_is_sampled_evenly() -> None:
    video = video_from_frames(_frames(100), replace(LIMITS, max_video_frames=8), "v")
    assert [int(f[0, 0, 0]) for f in video.frames] == [0, 14, 28, 42, 56, 70, 84, 99]


def test_frame_list_errors_name_the_item() -> None:
    with pytest.raises(MediaError, match=r"documents\[1\]\.video"):
        video_from_frames([], LIMITS, "documents[1].video")
    with pytest.raises(MediaError, match=r"documents\[2\]\.video.*one size"):
        video_from_frames(_frames(2) + _frames(1, size=(4, 4)), LIMITS, "documents[2].video")


# --- the decoded-media cache ---------------------------------------------------------------


def test_same_bytes_are_decoded_once(clip: bytes) -> None:
    decoder = MediaDecoder(LIMITS, cache_entries=8)
    data = png(Image.new("RGB", (16, 16), (1, 2, 3)))
    first = decoder.image(data, "query.image")
    assert decoder.image(data, "documents[0].image") is first
    video = decoder.video(clip, "v")
    assert decoder.video(clip, "v") is video
    stats = decoder.stats()
    assert (stats.entries, stats.hits, stats.misses) == (2, 2, 2)
    assert stats.bytes == 16 * 16 * 3 + 4 * 64 * 48 * 3


def test_cache_is_bounded_by_entries_and_bytes() -> None:
    decoder = MediaDecoder(LIMITS, cache_entries=2, max_bytes=3 * 10 * 10 * 3)
    images = [png(Image.new("RGB", (10, 10), (i, 0, 0))) for i in range(4)]
    for data in images:
        decoder.image(data, "x")
    assert decoder.stats().entries == 2
    decoder.image(images[3], "x")
    decoder.image(images[0], "x")
    assert decoder.stats().hits == 1
    big = png(Image.new("RGB", (20, 20)))
    decoder.image(big, "x")  # bigger than the whole budget: returned, not kept
    assert decoder.stats().bytes <= 3 * 10 * 10 * 3


def test_failures_are_not_cached() -> None:
    decoder = MediaDecoder(LIMITS, cache_entries=8)
    for _ in range(2):
        with pytest.raises(MediaError):
            decoder.image(b"junk", "x")
    assert decoder.stats().entries == 0 and decoder.stats().misses == 2


def test_concurrent_decodes_are_safe() -> None:
    decoder = MediaDecoder(LIMITS, cache_entries=4)
    images = [png(Image.new("RGB", (12, 12), (i, i, 0))) for i in range(6)]
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for k in range(30):
                data = images[(k + offset) % len(images)]
                assert decoder.image(data, "x").digest == hashlib.sha256(data).hexdigest()
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    stats = decoder.stats()
    assert stats.entries <= 4 and stats.hits + stats.misses == 120
