"""The model registry (engine/llm/models.toml): what to send to a model, what it costs,
its context window, knowledge cutoff and shutdown date, each row dated and sourced.

A model id is normalised before it is looked up: OpenRouter's ``openai/gpt-6-luna``,
Gemini's ``models/gemini-...``, a dated snapshot ``gpt-4o-mini-2024-07-18`` and an Azure
deployment named in ``llm.deployments`` all find their family's row. An id no row matches
gets :data:`UNKNOWN`, a row that knows nothing, so the callers fail closed.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
import tomllib
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_PREFIXES = ("openai/", "models/", "azure/", "deepseek/", "mistralai/", "google/", "groq/")
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")


class ModelInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pattern: tuple[str, ...] = ()
    family: str = "unknown"
    provider: str = "unknown"
    api: Literal["chat", "responses"] = "chat"
    token_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    sampling: Literal["any", "effort_none", "never"] = "any"
    seed: bool = True
    reasoning_efforts: tuple[str, ...] = ()
    default_effort: str | None = None
    reasons_always: bool = False
    json_schema: bool = True
    context_window: int | None = Field(default=None, gt=0)
    max_output: int | None = Field(default=None, gt=0)
    price_input: float | None = Field(default=None, ge=0)
    price_output: float | None = Field(default=None, ge=0)
    knowledge_cutoff: dt.date | None = None
    shutdown: dt.date | None = None
    checked: dt.date | None = None
    source: str = ""

    @field_validator("pattern", mode="before")
    @classmethod
    def _listify(cls, v: object) -> object:
        return (v,) if isinstance(v, str) else v

    @property
    def known(self) -> bool:
        return bool(self.pattern)

    @property
    def priced(self) -> bool:
        return self.price_input is not None and self.price_output is not None

    def effort(self, configured: str) -> str | None:
        """The reasoning_effort to send: None for a model that takes none."""
        if not self.reasoning_efforts:
            return None
        if configured == "auto":
            return self.default_effort
        return configured if configured in self.reasoning_efforts else self.default_effort

    def lower_effort(self, effort: str | None) -> str | None:
        """The next lower effort the model takes (for a retry after running out of tokens)."""
        if effort is None or effort not in self.reasoning_efforts:
            return effort
        i = self.reasoning_efforts.index(effort)
        return self.reasoning_efforts[i - 1] if i > 0 else effort

    def reasons(self, effort: str | None) -> bool:
        """Whether this request will spend tokens on reasoning (then it gets the headroom)."""
        return self.reasons_always or (effort is not None and effort != "none")

    def sends_sampling(self, effort: str | None) -> bool:
        if self.sampling == "never":
            return False
        if self.sampling == "effort_none":
            return effort in (None, "none")
        return True


UNKNOWN = ModelInfo()


def normalise(model: str, deployments: dict[str, str] | None = None) -> str:
    """The registry id of `model`: mapped deployment, no provider prefix, no dated snapshot."""
    m = (deployments or {}).get(model, model).strip().lower()
    for prefix in _PREFIXES:
        if m.startswith(prefix):
            m = m[len(prefix):]
    return _SNAPSHOT.sub("", m)


@cache
def registry() -> tuple[ModelInfo, ...]:
    text = resources.files("engine.llm").joinpath("models.toml").read_text(encoding="utf-8")
    return tuple(ModelInfo.model_validate(row) for row in tomllib.loads(text)["model"])


def lookup(model: str, deployments: dict[str, str] | None = None) -> ModelInfo:
    """The first registry row whose pattern matches the normalised id, or UNKNOWN."""
    mid = normalise(model, deployments)
    for row in registry():
        if any(fnmatch.fnmatchcase(mid, p) for p in row.pattern):
            return row
    return UNKNOWN
