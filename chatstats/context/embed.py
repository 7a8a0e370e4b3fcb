"""Embedders: the bundled offline default, or any LiteLLM provider when one is configured.

The default is WordLlama's `l2_supercat` 256-dim static model. Its weights (16 MB) ship
inside the `wordllama` wheel, so it works with no network and no configuration; nothing is
fetched from a model hub at run time (we pass the package folder as the cache and forbid
downloads). Measured here (2 cores): load 0.45 s, 30-70k short texts/s, so a 300k-message
library embeds in seconds; a transformer (all-MiniLM-L6-v2 on CPU, ~50 texts/s on this kind of
machine, not re-measured) would take
well over an hour and could not meet the two-minute build target.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from chatstats.config import Settings

Vectors = npt.NDArray[np.float32]

# The model's first DIM of its 256 dimensions (it is trained to be truncated, matryoshka
# style): see the figures in BundledEmbedder.
DIM = int(os.environ.get("CHATSTATS_BUNDLED_DIM", "128"))
DEFAULT_MODEL = f"wordllama/l2_supercat-{DIM}"
_TOKENIZER_FILE = "l2_supercat_tokenizer_config.json"
_WEIGHTS_FILE = "l2_supercat_256.safetensors"


class Embedder(Protocol):
    """What the index needs: a stable model name, a dimension, unit-norm float32 rows."""

    name: str
    dim: int

    def embed(self, texts: list[str]) -> Vectors: ...


class BundledEmbedder:
    """WordLlama loaded from its own wheel; thread-safe (numpy only, no shared state)."""

    def __init__(self, dim: int = DIM) -> None:
        self.dim = dim
        self.name = f"wordllama/l2_supercat-{dim}"
        # Loaded at first use, in whichever worker thread embeds first: never on the loop.
        self._table: npt.NDArray[np.float16] | None = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        with self._lock:
            if self._table is not None:
                return
            # Belt and braces: the tokenizer library must not reach a hub either.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            # The wheel's own files, read without importing `wordllama` (its import alone,
            # pydantic, requests and the trainers, cost the daemon ~33 MB of RSS), and the
            # weights kept as the file stores them, float16 (8 MB for 128 dimensions, not
            # 16): sums are taken in float32 (`_sums`), so the vectors are the same as
            # WordLlama.load's float32 copy gives.
            from safetensors import safe_open
            from tokenizers import Tokenizer

            spec = importlib.util.find_spec("wordllama")
            if spec is None or not spec.submodule_search_locations:
                raise RuntimeError("the wordllama package is not installed")
            package = Path(next(iter(spec.submodule_search_locations)))
            tokenizer = Tokenizer.from_file(str(package / "tokenizers" / _TOKENIZER_FILE))
            # WordLlama's own embed() pads every batch to its longest text, so one long
            # message makes a batch cost 64x its length; we pool over unpadded tokens
            # instead (the same vectors: a mean of token embeddings), ~10x faster here.
            tokenizer.no_padding()
            tokenizer.no_truncation()
            with safe_open(str(package / "weights" / _WEIGHTS_FILE), framework="np") as f:
                weights = f.get_slice("embedding.weight")[:, : self.dim]  # only those read
            self._tokenizer = tokenizer
            self._table = np.ascontiguousarray(weights, dtype=np.float16)

    def embed(self, texts: list[str]) -> Vectors:
        out = self.sums(texts)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.where(norms == 0, 1.0, norms)
        return out

    def sums(self, texts: list[str]) -> Vectors:
        """Unnormalised sums of each text's token vectors. A mean-pooled static model's
        vector of a concatenation is the normalised sum of its parts' sums, so the index
        embeds a conversation window from its lines' sums without tokenising it again."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._table is None:
            self._load()
        # Chunks bound the gathered token matrix (tokens x dim floats) to a few MB.
        step = 1024
        return np.vstack([self._sums(texts[i : i + step]) for i in range(0, len(texts), step)])

    def _sums(self, texts: list[str]) -> Vectors:
        assert self._table is not None
        encoded = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encoded), dtype=np.int64, count=len(texts))
        flat = np.fromiter(
            (i for e in encoded for i in e.ids), dtype=np.int64, count=int(lengths.sum())
        )
        np.clip(flat, 0, self._table.shape[0] - 1, out=flat)
        out = np.zeros((len(texts), self._table.shape[1]), dtype=np.float32)
        nonempty = lengths > 0
        if flat.size:
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[nonempty]
            out[nonempty] = np.add.reduceat(self._table[flat], starts, axis=0, dtype=np.float32)
        return out


_bundled: BundledEmbedder | None = None
_bundled_lock = threading.Lock()


def bundled() -> BundledEmbedder:
    """One process-wide instance: loading costs ~0.3 s and ~25 MB, so do it once."""
    global _bundled
    with _bundled_lock:
        if _bundled is None:
            _bundled = BundledEmbedder()
        return _bundled


def from_settings(settings: Settings | None) -> Any:
    """The configured provider (CHATSTATS_EMBED_MODEL) or the bundled default."""
    if settings is not None and settings.embed_model:
        from chatstats.context.remote_embed import RemoteEmbedder

        return RemoteEmbedder(
            settings.embed_model,
            api_base=settings.embed_api_base or settings.llm_api_base,
            api_key=settings.llm_api_key,
            timeout_s=settings.llm_timeout_s,
        )
    return bundled()
