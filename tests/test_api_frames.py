"""A video sent over REST as a list of frames: {"video": {"frames": [image, ...]}}."""
from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from reranker.content import ImageItem
from reranker.media.video import video_from_frames
from reranker.service.inputs import InputBuilder
from reranker.service.types import FrameList, RawItem
from reranker.settings import Limits
from tests.conftest import TEST_LIMITS, data_uri


def png(shade: int, size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (shade, 255 - shade, shade // 2)).save(buffer, format="PNG")
    return buffer.getvalue()


def frames_uri(count: int, size: tuple[int, int] = (40, 30)) -> list[str]:
    return [data_uri(png(i * 20 % 256, size), "image/png") for i in range(count)]


def rerank(client: TestClient, **body: Any) -> Any:
    return client.post("/v1/rerank", json=body)


def test_frame_list_video_is_ranked(client: TestClient) -> None:
    documents = [{"video": {"frames": frames_uri(5)}}, "a green screen", {"text": "x", "video": {"frames": frames_uri(1)}}]
    response = rerank(client, query="a flickering green video", documents=documents, return_documents=True)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert sorted(r["index"] for r in results) == [0, 1, 2]
    assert all(0.0 <= r["relevance_score"] <= 1.0 for r in results)


@pytest.mark.parametrize(("video", "words"), [
    ({"frames": []}, ("frames",)),
    ({"frames": ["x"], "fps": 2}, ("fps",)),
    ({"frame": ["x"]}, ("frame",)),
    ({"frames": "images/camera.jpg"}, ("frames",)),
])
def test_malformed_frame_lists_are_refused(client: TestClient, video: Any, words: tuple[str, ...]) -> None:
    response = rerank(client, query="q", documents=[{"video": video}])
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert all(word in message for word in words), message


def test_frames_of_two_sizes_are_refused_naming_the_document(client: TestClient) -> None:
    frames = frames_uri(2) + frames_uri(1, size=(20, 20))
    response = rerank(client, query="q", documents=["a", {"video": {"frames": frames}}])
    assert response.status_code == 422, response.text
    assert "documents[1].video" in response.json()["error"]["message"]


def test_an_undecodable_frame_is_named(client: TestClient) -> None:
    frames = frames_uri(2) + [data_uri(b"not a png", "image/png")]
    response = rerank(client, query="q", documents=[{"video": {"frames": frames}}])
    assert response.status_code == 422, response.text
    assert "documents[0].video.frames[2]" in response.json()["error"]["message"]


def test_too_many_frames_are_refused_before_decoding(client: TestClient) -> None:
    count = TEST_LIMITS.max_frame_list_frames + 1
    response = rerank(client, query="q", documents=[{"video": {"frames": ["images/camera.jpg"] * count}}])
    assert response.status_code == 422, response.text
    assert str(TEST_LIMITS.max_frame_list_frames) in response.json()["error"]["message"]


class _Decoder:
    def image(self, data: bytes, what: str, check: Any = None) -> ImageItem:
        return ImageItem(Image.open(io.BytesIO(data)).convert("RGB"), f"{data[-8:].hex():0>64}")

    def video(self, data: bytes, what: str, check: Any = None) -> Any:
        raise AssertionError("a frame list must not reach the video decoder")


class _Reader:
    def read(self, ref: str | bytes, what: str) -> bytes:
        assert isinstance(ref, bytes)
        return ref


def test_input_builder_turns_a_frame_list_into_one_frame_video() -> None:
    limits = Limits(max_video_frames=4)
    frames = tuple(png(shade) for shade in (0, 60, 120, 180, 240))
    content = InputBuilder(limits, _Reader(), _Decoder()).content(RawItem(videos=(FrameList(frames),)), "query")
    (video,) = content.videos
    expected = video_from_frames([_Decoder().image(f, "") for f in frames], limits, "query.video")
    assert video.from_frames and len(video.frames) == 4
    assert video.timestamps == expected.timestamps
    assert all(np.array_equal(a, b) for a, b in zip(video.frames, expected.frames))
