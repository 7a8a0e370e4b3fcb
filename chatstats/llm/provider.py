"""Loading LiteLLM lazily, resolving providers, registering prices, building requests.

Why lazy: importing LiteLLM costs ~4 s and ~160 MB, and its first request imports ~500 more
modules. Both happen in a worker thread on first need (or at `warm_up()`), never on the
start path and never on the event loop, which keeps serving meanwhile.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any

import anyio.to_thread

from chatstats import log
from chatstats.llm.config import DUMMY_API_KEY, LLMConfig

logger = log.get(__name__)

_litellm: Any = None
_load_lock = threading.Lock()
_registered_prices: dict[str, tuple[float, float]] = {}
_provider_cache: dict[tuple[str, str | None, str | None], tuple[str, str | None]] = {}

# Modules LiteLLM imports on its first request and first stream (~1.5 s on the loop
# otherwise). Best effort: a name that moves in another version only costs that time back.
_FIRST_CALL_MODULES = (
    "openai.resources.chat",
    "openai.lib.streaming.chat",
    "litellm.llms.openai.openai",
    "litellm.llms.openai.chat.gpt_audio_transformation",
    "litellm.llms.openai_like.dynamic_config",
    "litellm.llms.litellm_proxy.chat.transformation",
    "litellm.llms.vertex_ai.vertex_ai_partner_models.anthropic.transformation",
    "litellm.proxy._types",
    "litellm.proxy.openai_files_endpoints.common_utils",
    "litellm._service_logger",
    "litellm.integrations.prometheus_services",
    "litellm.litellm_core_utils.default_encoding",
    "litellm.types.litellm_core_utils.streaming_chunk_builder_utils",
    "anyio.streams.memory",
)


def _load() -> Any:
    global _litellm
    with _load_lock:
        if _litellm is not None:
            return _litellm
        started = time.perf_counter()
        # Never fetch the price list from the network; never read a .env file.
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        os.environ["LITELLM_MODE"] = "PRODUCTION"
        # OpenAI and OpenAI-compatible endpoints through LiteLLM's own HTTP handler rather
        # than the OpenAI SDK under it: the SDK re-walks every request message against its
        # typed unions (~0.2 ms a message, per call) and builds a pydantic object per chunk
        # before LiteLLM builds its own; without it a chatbot step costs ~30% less CPU
        # (scripts/bench_chatbot.py). Read by LiteLLM on each call; set it to "false" in the
        # environment to go back to the SDK.
        os.environ.setdefault("EXPERIMENTAL_OPENAI_BASE_LLM_HTTP_HANDLER", "true")
        import litellm as _lm

        litellm: Any = _lm  # untyped at its edges; we only set documented switches
        litellm.suppress_debug_info = True  # else it prints help banners on stdout
        litellm.turn_off_message_logging = True  # keep prompts out of its logging objects
        litellm.set_verbose = False
        litellm.num_retries = None
        # Its OpenAI paths read `max_retries or DEFAULT_MAX_RETRIES`, so the 0 every caller
        # passes would become 2 hidden SDK retries; the callers (completions, streams and
        # embeddings) count and account their attempts themselves.
        litellm.DEFAULT_MAX_RETRIES = 0
        litellm.request_timeout = 60.0
        _tame_litellm_logging()
        for name in _FIRST_CALL_MODULES:
            try:
                importlib.import_module(name)
            except Exception:  # best effort, see above
                continue
        _build_response_types(litellm)
        _litellm = litellm
        with contextlib.suppress(Exception):
            logger.info("litellm_loaded", seconds=round(time.perf_counter() - started, 2))
        return litellm


def _build_response_types(litellm: Any) -> None:
    """Pydantic builds LiteLLM's response models on first use, on the loop, and warns
    (UserWarning about ReadOnly TypedDict items) while doing so: build them here instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        builds: tuple[Any, ...] = (
            lambda: litellm.ModelResponse(),
            lambda: litellm.ModelResponseStream(),
            lambda: litellm.Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0),
        )
        for build in builds:
            try:
                build()
            except Exception:  # best effort: only the first call gets slower
                continue


def _tame_litellm_logging() -> None:
    """LiteLLM routes its INFO lines to stdout, where the desktop app expects only our JSON;
    it may also log request details at DEBUG. Send it through the root logger, errors only."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("LiteLLM") or name.startswith("litellm"):
            lg = logging.getLogger(name)
            for handler in list(lg.handlers):
                lg.removeHandler(handler)
            lg.setLevel(logging.ERROR)
            lg.propagate = True


def load() -> Any:
    """LiteLLM, imported and set up once (~4 s the first time): for callers in a worker
    thread, such as the embedder; on the loop use `ensure_litellm`."""
    return _load()


async def warm_up() -> None:
    """Import LiteLLM now, off the loop, so the first real call doesn't pay for it."""
    await ensure_litellm()


async def ensure_litellm() -> Any:
    if _litellm is not None:
        return _litellm
    return await anyio.to_thread.run_sync(_load)


def loaded() -> bool:
    return _litellm is not None


def provider_of(lm: Any, config: LLMConfig) -> tuple[str, str | None]:
    """(bare model, provider) as LiteLLM resolves them; cached, it parses model names."""
    key = (config.model, _provider_hint(config), config.api_base)
    hit = _provider_cache.get(key)
    if hit is not None:
        return hit
    try:
        bare, provider, _, _ = lm.get_llm_provider(
            model=config.model, custom_llm_provider=key[1], api_base=config.api_base
        )
        found: tuple[str, str | None] = (bare, provider)
    except Exception:
        found = (config.model, key[1])
    _provider_cache[key] = found
    return found


def _provider_hint(config: LLMConfig) -> str | None:
    if config.provider:
        return config.provider
    if config.api_base and "/" not in config.model:
        return "openai"
    return None


def _register_prices(lm: Any, config: LLMConfig) -> None:
    """Give LiteLLM the config's prices, so it computes `response_cost` for the model."""
    if config.input_cost_per_token is None and config.output_cost_per_token is None:
        return
    bare, provider = provider_of(lm, config)
    key = f"{provider}/{bare}" if provider else bare
    prices = (config.input_cost_per_token or 0.0, config.output_cost_per_token or 0.0)
    if _registered_prices.get(key) == prices:
        return
    entry: dict[str, Any] = {
        "input_cost_per_token": prices[0],
        "output_cost_per_token": prices[1],
        # Explicit zeros keep LiteLLM from warning about unknown cache pricing on each call.
        "cache_creation_input_token_cost": 0.0,
        "cache_read_input_token_cost": 0.0,
        "mode": "chat",
    }
    if provider:
        entry["litellm_provider"] = provider
    lm.register_model({key: entry})
    _registered_prices[key] = prices


def request_kwargs(
    lm: Any, config: LLMConfig, messages: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    _register_prices(lm, config)
    kwargs: dict[str, Any] = {
        "model": config.model,
        "messages": list(messages),
        "timeout": config.timeout_s,
        # Retries are the job queue's business (it honours Retry-After and records each
        # attempt); LiteLLM's and the OpenAI SDK's would hide attempts from the accounts.
        "num_retries": 0,
        "max_retries": 0,
    }
    hint = _provider_hint(config)
    if hint:
        kwargs["custom_llm_provider"] = hint
    if config.api_base:
        kwargs["api_base"] = config.api_base
    api_key = config.api_key or (DUMMY_API_KEY if config.api_base else None)
    if api_key:
        kwargs["api_key"] = api_key
    if config.max_output_tokens:
        kwargs["max_tokens"] = config.max_output_tokens
    return kwargs


def usage_numbers(usage: Any) -> tuple[int | None, int | None, int | None]:
    if usage is None:
        return None, None, None

    def num(name: str) -> int | None:
        value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
        return int(value) if isinstance(value, int | float) else None

    prompt, completion, total = num("prompt_tokens"), num("completion_tokens"), num("total_tokens")
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    return prompt, completion, total


def _as_cost(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def response_cost(response: Any) -> float | None:
    """LiteLLM's own figure; None for a model without a price (it must never crash us)."""
    try:
        hidden = getattr(response, "_hidden_params", None) or {}
        return _as_cost(hidden.get("response_cost"))
    except Exception:
        return None


def stream_cost(
    lm: Any, config: LLMConfig, usage: Any, prompt: int | None, completion: int | None
) -> float | None:
    cost = _as_cost(getattr(usage, "cost", None)) if usage is not None else None
    if cost is not None or prompt is None or completion is None:
        return cost
    bare, provider = provider_of(lm, config)
    try:
        prompt_cost, completion_cost = lm.cost_per_token(
            model=bare,
            prompt_tokens=prompt,
            completion_tokens=completion,
            custom_llm_provider=provider,
        )
    except Exception:  # ModelNotMappedError for unpriced models, and anything else
        return None
    return _as_cost(prompt_cost + completion_cost)
