"""Settings, declared once with defaults and help, read from `CHATSTATS_*` variables.

Command-line flags override the environment (the CLI passes them as `overrides`). A test
checks that every setting here is documented in the README.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import msgspec

from chatstats.errors import SettingsError

ENV_PREFIX = "CHATSTATS_"


def _default_data_dir() -> str:
    if sys.platform == "darwin":
        return str(Path.home() / "Library" / "Application Support" / "ChatStats")
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(xdg) / "chatstats")


def _default_source() -> str:
    return str(Path.home() / "Library" / "Messages" / "chat.db")


def _default_addressbook() -> str:
    return str(Path.home() / "Library" / "Application Support" / "AddressBook")


def _help(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    data_dir: Annotated[str, _help("Where the app database, API token and logs live.")] = (
        msgspec.field(default_factory=_default_data_dir)
    )
    source: Annotated[str, _help("Apple's Messages database (chat.db) to import and tail.")] = (
        msgspec.field(default_factory=_default_source)
    )
    addressbook: Annotated[
        str, _help("AddressBook folder (or one .abcddb file) used to name contacts.")
    ] = msgspec.field(default_factory=_default_addressbook)
    host: Annotated[str, _help("Address to listen on; loopback only by default.")] = "127.0.0.1"
    port: Annotated[int, _help("TCP port; 0 picks a free one.")] = 8765
    token: Annotated[
        str | None, _help("Bearer token for the API; generated into <data-dir>/api-token if unset.")
    ] = None
    log_level: Annotated[str, _help("DEBUG, INFO, WARNING or ERROR.")] = "INFO"
    debug: Annotated[bool, _help("Log at DEBUG level, whatever CHATSTATS_LOG_LEVEL says.")] = False
    timezone: Annotated[
        str | None, _help("IANA zone of the statistics' days and hours; unset: the system's.")
    ] = None
    heartbeat_seconds: Annotated[float, _help("Interval of SSE heartbeat events.")] = 30.0
    parent_pid: Annotated[
        int | None, _help("Sidecar mode: exit when this process (the desktop app) dies.")
    ] = None
    llm_model: Annotated[
        str | None,
        _help("LiteLLM model for analysis (e.g. openai/gpt-4o-mini); unset: analysis waits."),
    ] = None
    llm_api_base: Annotated[
        str | None, _help("Base URL of the model's endpoint (an OpenAI-compatible server).")
    ] = None
    llm_api_key: Annotated[str | None, _help("API key for the model's provider; never logged.")] = (
        None
    )
    embed_model: Annotated[
        str | None,
        _help("LiteLLM embedding model for search (e.g. ollama/nomic-embed-text); unset: bundled."),
    ] = None
    embed_api_base: Annotated[
        str | None, _help("Base URL of the embedding model's endpoint; unset: the provider's.")
    ] = None
    llm_concurrency: Annotated[int, _help("LLM calls in flight at once (analysis).")] = 4
    analysis_workers: Annotated[
        int, _help("Analysis worker tasks; 0 means twice CHATSTATS_LLM_CONCURRENCY.")
    ] = 0
    llm_timeout_s: Annotated[float, _help("Seconds before one LLM call is abandoned.")] = 60.0
    llm_max_attempts: Annotated[
        int, _help("Attempts per analysis job (retries included) before it is dead.")
    ] = 5
    llm_provider: Annotated[
        str | None,
        _help(
            "LiteLLM provider name (e.g. openai for any OpenAI-compatible server); unset: inferred."
        ),
    ] = None
    llm_input_cost_per_token: Annotated[
        float | None,
        _help("Price of one prompt token in USD, for models LiteLLM has no price for."),
    ] = None
    llm_output_cost_per_token: Annotated[
        float | None,
        _help("Price of one completion token in USD, for models LiteLLM has no price for."),
    ] = None
    llm_max_output_tokens: Annotated[
        int | None, _help("Cap on completion tokens per LLM call; unset: the model's own.")
    ] = None

    @property
    def db_path(self) -> Path:
        return Path(self.data_dir) / "chatstats.db"

    @property
    def effective_log_level(self) -> str:
        return "DEBUG" if self.debug else self.log_level


def load(
    overrides: dict[str, object] | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Environment first, then non-None overrides; a malformed value is a clear SettingsError."""
    env = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    for name in Settings.__struct_fields__:
        value = env.get(ENV_PREFIX + name.upper())
        if value is not None and value != "":
            raw[name] = value
    for name, override in (overrides or {}).items():
        if override is not None:
            raw[name] = override
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid setting: {exc}") from None


def setting_docs() -> dict[str, str]:
    """Name of each environment variable → its help text (for the README and its test)."""
    out: dict[str, str] = {}
    for field in msgspec.inspect.type_info(Settings).fields:  # type: ignore[attr-defined]
        t = field.type
        desc = (
            (t.extra_json_schema or {}).get("description", "")
            if isinstance(t, msgspec.inspect.Metadata)
            else ""
        )
        out[ENV_PREFIX + field.name.upper()] = desc
    return out


def setting_defaults() -> dict[str, object]:
    """Name of each environment variable → its default, or NODEFAULT where the default is
    computed at run time (paths that depend on the platform). The README's table is checked
    against this, so documented defaults cannot drift from the code."""
    out: dict[str, object] = {}
    for field in msgspec.inspect.type_info(Settings).fields:  # type: ignore[attr-defined]
        out[ENV_PREFIX + field.name.upper()] = field.default
    return out
