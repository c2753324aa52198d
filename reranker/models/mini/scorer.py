"""The mini reranker: both sides of a pair become weighted phrases, compared in MiniLM space."""
from __future__ import annotations

import hashlib
import math
import time
from typing import Sequence

import numpy as np
from PIL import Image

from reranker.content import Content, ImageItem, Pair, VideoItem
from reranker.errors import InputError, NotReady
from reranker.models.base import ModelInfo
from reranker.models.mini.cache import LruCache
from reranker.models.mini.colours import ColourProfile, colour_profile, colour_words
from reranker.models.mini.interaction import PhraseVectors, late_interaction
from reranker.models.mini.manifest import MiniConfig
from reranker.models.mini.phrases import split_clauses, with_head_nouns
from reranker.models.mini.textbag import Bag, TextEncoder
from reranker.models.mini.vision import ImageNetClassifier
from reranker.models.tokens import TextMeasure


ISOLATED_CACHE_ENTRIES = 65536  # more than one isolated run's phrases: nothing is embedded twice in it


def _query_point(digest: str) -> float:
    """A fixed point in [0, 1) per query: the same queries fail every time (and on retry)."""
    return int(hashlib.sha256(b"fault:" + digest.encode()).hexdigest()[:12], 16) / 16**12


class MiniReranker:
    """Scores pairs by comparing their bags in MiniLM space, squashed into [0, 1]: the cosine of
    the bags' mean embeddings, or (interaction "late") each query phrase's best document match.

    The instruction is ignored: the mini model has no instruction-following part.
    Per-item features (visual words per image or video digest, embeddings per text) live in
    bounded LRU caches owned by this object. Callers serialise calls to score().
    """

    def __init__(
        self,
        config: MiniConfig,
        info: ModelInfo,
        encoder: TextEncoder,
        classifier: ImageNetClassifier,
    ) -> None:
        self._config = config
        self._info = info
        self._encoder: TextEncoder | None = encoder
        self._classifier: ImageNetClassifier | None = classifier
        self.visual_cache: LruCache[str, Bag] = LruCache(config.cache_entries)
        self._text_measure = TextMeasure(encoder.tokenizer)

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def text_encoder(self) -> TextEncoder:
        return self._live()[0]

    @property
    def text_cache(self) -> LruCache[str, np.ndarray]:
        return self.text_encoder.cache

    def score(self, pairs: Sequence[Pair]) -> list[float]:
        """Scores in [0, 1]; the manifest's fault_* options (off by default) make them slower,
        shifted or failing, so rollout gates can be tested on a real model."""
        config = self._config
        started = time.perf_counter()
        if config.fault_error_rate > 0:
            for pair in pairs:
                if _query_point(pair.query.digest) < config.fault_error_rate:
                    raise RuntimeError(f"injected fault: model {self._info.id} fails "
                                       f"{config.fault_error_rate:.0%} of queries (fault_error_rate)")
        scores = self._score(pairs)
        if config.fault_score_shift:
            scores = [min(max(value + config.fault_score_shift, 0.0), 1.0) for value in scores]
        if config.fault_slowdown > 0:
            time.sleep((time.perf_counter() - started) * config.fault_slowdown)
        return scores

    def score_isolated(self, pairs: Sequence[Pair], session: dict | None = None) -> list[float]:
        """score() without the shared text-embedding cache: texts are embedded in this call's
        forward pass, or taken from `session`, a scratch dict the caller keeps for one isolated
        run (say, one golden-set check) and hands to every call of it. Two versions given the same
        calls in the same order with fresh sessions embed every text in the same company, so
        their scores depend on the pairs alone, never on what live traffic left cached (an
        embedding varies in its last bits with what it was padded with). Image and video words
        are computed one item at a time, so their shared cache stays in use."""
        encoder, _ = self._live()
        cache = (session if session is not None else {}).setdefault("text_cache", LruCache(ISOLATED_CACHE_ENTRIES))
        saved = encoder.cache
        encoder.cache = cache
        try:
            return self.score(pairs)
        finally:
            encoder.cache = saved

    def _score(self, pairs: Sequence[Pair]) -> list[float]:
        encoder, _ = self._live()
        bags: dict[str, Bag] = {}
        for index, pair in enumerate(pairs):
            for side, content in (("query", pair.query), ("document", pair.document)):
                if content.digest not in bags:
                    bags[content.digest] = self.describe(content)
                    if bags[content.digest].is_empty():
                        raise InputError(f"pairs[{index}].{side} is empty: nothing to score")
        encoder.encode([phrase for bag in bags.values() for phrase, _ in bag.phrases])  # one forward
        if self._config.interaction == "late":
            embedded = {digest: phrase_vectors(encoder, bag) for digest, bag in bags.items()}
            power = self._config.late_weight_power
            return [
                self._squash(late_interaction(embedded[p.query.digest], embedded[p.document.digest], power))
                for p in pairs
            ]
        vectors = {digest: encoder.bag_vector(bag) for digest, bag in bags.items()}
        return [
            self._squash(float(vectors[p.query.digest] @ vectors[p.document.digest])) for p in pairs
        ]

    def count_tokens(self, pairs: Sequence[Pair]) -> list[int]:
        """Tokens MiniLM reads per pair: every phrase of both sides' bags (text clauses, label and
        colour words; the visual words come from the cache score() just filled)."""
        encoder, _ = self._live()
        per_side: dict[str, int] = {}
        counts = []
        for pair in pairs:
            total = 0
            for content in (pair.query, pair.document):
                if content.digest not in per_side:
                    per_side[content.digest] = encoder.token_count([p for p, _ in self.describe(content).phrases])
                total += per_side[content.digest]
            counts.append(total)
        return counts

    def text_tokens(self, text: str) -> int:
        """MiniLM tokens of a text (no special tokens): what the API's token limits count."""
        return self._text_measure.count(text)

    def cut_text(self, text: str, max_tokens: int) -> str:
        return self._text_measure.cut(text, max_tokens)

    def dropped_tokens(self, query_text: str, document_text: str) -> int:
        """MiniLM reads each text unit (a clause, or the whole text) up to its max_tokens, its two
        special tokens included, and cuts the rest of a longer unit: the tokens it would drop."""
        room = self._live()[0].max_tokens - 2
        dropped = 0
        for text in (query_text.strip(), document_text.strip()):
            if text:
                units = split_clauses(text) if self._config.text_units == "clauses" else [text]
                dropped += sum(max(0, self.text_tokens(unit) - room) for unit in units)
        return dropped

    def describe(self, content: Content) -> Bag:
        """The weighted phrases that stand for one query or document."""
        bag = Bag(())
        if content.text and content.text.strip():
            text = content.text.strip()
            units = split_clauses(text) if self._config.text_units == "clauses" else [text]
            bag = bag + Bag(tuple((unit, self._config.text_weight) for unit in units))
        for image in content.images:
            bag = bag + self.visual_cache.get_or_compute(image.digest, lambda i=image: self._image_words(i))
        for video in content.videos:
            bag = bag + self.visual_cache.get_or_compute(video.digest, lambda v=video: self._video_words(v))
        return bag

    def close(self) -> None:
        self._encoder = None
        self._classifier = None
        self.visual_cache.clear()

    def _live(self) -> tuple[TextEncoder, ImageNetClassifier]:
        if self._encoder is None or self._classifier is None:
            raise NotReady(f"model {self._info.id!r} is closed")
        return self._encoder, self._classifier

    def _image_words(self, item: ImageItem) -> Bag:
        probs = self._live()[1].probabilities([item.image], self._config.flip_average)
        return self._visual_bag(probs.mean(axis=0), [colour_profile(item.image)])

    def _video_words(self, item: VideoItem) -> Bag:
        if not item.frames:
            raise InputError(f"video {item.digest[:12]} has no frames")
        frames = [Image.fromarray(item.frames[i]) for i in subsample(len(item.frames), self._config.frames_per_video)]
        probs = self._live()[1].probabilities(frames, self._config.flip_average)
        return self._visual_bag(probs.mean(axis=0), [colour_profile(frame) for frame in frames])

    def _visual_bag(self, probs: np.ndarray, profiles: list[ColourProfile]) -> Bag:
        cfg = self._config
        labels = self._live()[1].top_labels(probs, cfg.labels_per_image, cfg.min_label_probability)
        uniform = cfg.label_weighting == "uniform"
        words = [(label.word, 1.0 if uniform else label.probability) for label in labels]
        if cfg.head_nouns:
            words = with_head_nouns(words)
        kept = sum(weight for _, weight in words)
        label_phrases = tuple((word, cfg.label_weight * weight / kept) for word, weight in words)
        colours = colour_words(merge_profiles(profiles), cfg.colours_per_image, cfg.min_colour_fraction)
        return Bag(label_phrases + tuple((word, cfg.colour_weight * share) for word, share in colours))

    def _squash(self, cosine: float) -> float:
        cfg = self._config
        return 1.0 / (1.0 + math.exp(-cfg.score_scale * (cosine - cfg.score_center)))


def subsample(count: int, wanted: int) -> list[int]:
    """`wanted` indices spread evenly over range(count), centred in their segments."""
    take = min(count, wanted)
    return [int((2 * k + 1) * count / (2 * take)) for k in range(take)]


def phrase_vectors(encoder: TextEncoder, bag: Bag) -> PhraseVectors:
    """The bag's phrases embedded one by one (from the encoder's cache after the batch forward)."""
    vectors = encoder.encode([phrase for phrase, _ in bag.phrases])
    return PhraseVectors(vectors, np.array([weight for _, weight in bag.phrases], dtype=np.float32))


def merge_profiles(profiles: list[ColourProfile]) -> ColourProfile:
    """The average colour shares of several frames; monochrome only if every frame is."""
    names = sorted({name for profile in profiles for name in profile.shares})
    shares = {name: sum(p.shares.get(name, 0.0) for p in profiles) / len(profiles) for name in names}
    return ColourProfile(shares=shares, monochrome=all(p.monochrome for p in profiles))
