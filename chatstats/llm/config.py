"""Which model the gateway calls, read from Settings; None means no model (features wait)."""

from __future__ import annotations

import msgspec

from chatstats.config import Settings

# A local OpenAI-compatible server needs some key; without one, LiteLLM would send the
# user's OPENAI_API_KEY from the environment to whatever `api_base` says.
DUMMY_API_KEY = "sk-chatstats-local"


class LLMConfig(msgspec.Struct, kw_only=True, frozen=True):
    """Which model to call and how; prices are for models LiteLLM has no price for."""

    model: str
    api_base: str | None = None
    api_key: str | None = None
    # LiteLLM's provider name ("openai" for any OpenAI-compatible server). None lets
    # LiteLLM infer it from the model's prefix; with an `api_base` and an unprefixed model
    # name it defaults to "openai".
    provider: str | None = None
    timeout_s: float = 60.0
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    max_output_tokens: int | None = None


def configured(settings: Settings | None) -> LLMConfig | None:
    """The LLM config from settings, or None when no model is set (analysis stays off)."""
    if settings is None or not settings.llm_model:
        return None
    return LLMConfig(
        model=settings.llm_model,
        api_base=settings.llm_api_base or None,
        api_key=settings.llm_api_key or None,
        provider=settings.llm_provider or None,
        timeout_s=settings.llm_timeout_s,
        input_cost_per_token=settings.llm_input_cost_per_token,
        output_cost_per_token=settings.llm_output_cost_per_token,
        max_output_tokens=settings.llm_max_output_tokens or None,
    )
