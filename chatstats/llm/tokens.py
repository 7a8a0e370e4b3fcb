"""Counting tokens for real, offline, so a tool's output can be held to a prompt budget.

Why a tokenizer and not the transcripts' 4-characters estimate: the chatbot's tool results go
back into the model's context turn after turn, and a budget that is off by 30% on names,
numbers and emoji either wastes context or overflows it. The count is cl100k_base (tiktoken),
which is what LiteLLM itself falls back to for models it has no tokenizer for; other models'
tokenizers differ by a few percent, which the budgets leave room for.

The BPE table is read from the copy LiteLLM ships inside its wheel (tiktoken would otherwise
fetch it from the network on first use). Only the file is read: importing LiteLLM costs
seconds and reaches for the network, so it is not imported here.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import threading
from pathlib import Path

import tiktoken

_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# tiktoken_ext.openai_public.cl100k_base's split pattern (kept here: that module fetches).
_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_SPECIAL = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}

_encoding: tiktoken.Encoding | None = None
_lock = threading.Lock()


class TokenizerUnavailable(RuntimeError):
    """The bundled BPE table is missing or damaged (a broken install)."""


def _bpe_path() -> Path:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerUnavailable("litellm is not installed, so its tokenizer table is missing")
    name = hashlib.sha1(_URL.encode()).hexdigest()  # tiktoken's cache file name
    return (
        Path(next(iter(spec.submodule_search_locations)))
        / "litellm_core_utils"
        / ("tokenizers")
        / name
    )


def _load() -> tiktoken.Encoding:
    path = _bpe_path()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TokenizerUnavailable(f"cannot read the tokenizer table: {exc}") from None
    if hashlib.sha256(data).hexdigest() != _SHA256:
        raise TokenizerUnavailable("the tokenizer table does not match its checksum")
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }
    return tiktoken.Encoding(
        name="cl100k_base", pat_str=_PATTERN, mergeable_ranks=ranks, special_tokens=_SPECIAL
    )


def encoding() -> tiktoken.Encoding:
    """One process-wide encoding (loading the table takes ~0.2 s)."""
    global _encoding
    with _lock:
        if _encoding is None:
            _encoding = _load()
        return _encoding


def count(text: str) -> int:
    """Tokens of `text`; special-token strings in user data count as ordinary text."""
    return len(encoding().encode_ordinary(text))
