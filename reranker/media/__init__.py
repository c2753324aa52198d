"""Image and video loading, validation and limits (pillow, decord, PyAV fallback)."""
from reranker.media.cache import MediaCacheStats, MediaDecoder
from reranker.media.images import decode_image, to_rgb
from reranker.media.sources import MediaResolver
from reranker.media.video import decode_video, sample_count, sample_indices, video_from_frames

__all__ = [
    "MediaCacheStats",
    "MediaDecoder",
    "MediaResolver",
    "decode_image",
    "decode_video",
    "sample_count",
    "sample_indices",
    "to_rgb",
    "video_from_frames",
]
