"""The validated configuration.

The defaults live in ``engine/config.toml`` (data, not code). A user file passed with
``--config`` is merged on top of them key by key, so it only needs the keys it changes.
Code receives a frozen :class:`Config`; nothing else reads the TOML.
"""

from __future__ import annotations

import datetime as dt
import logging
import tomllib
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.errors import ConfigError

Calendar = Literal["XNYS", "XPAR"]
Currency = Literal["EUR", "USD"]



log = logging.getLogger(__name__)

class _Frozen(BaseModel):
    # TOML can spell inf and nan: no setting means either.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Asset(_Frozen):
    ticker: str
    name: str
    kind: Literal["etf", "stock", "index"]
    sector: str
    currency: Currency
    calendar: Calendar
    ftt: bool = False


class Benchmark(_Frozen):
    key: str
    ticker: str
    name: str
    currency: Currency
    calendar: Calendar


class PortfolioConfig(_Frozen):
    starting_capital_eur: float = Field(gt=0)
    whole_shares: bool = True
    min_order_eur: float = Field(ge=0)


class TaxRate(_Frozen):
    """A tax rate in force from `since` (inclusive) until the next entry of its schedule."""

    since: dt.date
    rate: float = Field(ge=0, lt=0.1)
    source: str = ""


class CostsConfig(_Frozen):
    slippage_bps: float = Field(ge=0, le=1000)
    commission_bps: float = Field(ge=0, le=1000)
    commission_min_eur: float = Field(ge=0)
    # The French FTT as a dated schedule (no tax before its first entry); which shares
    # it applies to is the per-asset `ftt` flag of the universe.
    french_ftt: tuple[TaxRate, ...] = ()
    fx_fee_bps: float = Field(ge=0, le=1000)

    @model_validator(mode="before")
    @classmethod
    def _flat_rate(cls, raw: Any) -> Any:
        """`french_ftt_rate = x` (a user override) is a flat rate on every date."""
        if isinstance(raw, dict) and "french_ftt_rate" in raw:
            raw = dict(raw)
            rate = raw.pop("french_ftt_rate")
            raw["french_ftt"] = [{"since": dt.date.min, "rate": rate, "source": "flat rate from the configuration"}]
        return raw

    @model_validator(mode="after")
    def _check_schedule(self) -> CostsConfig:
        dates = [r.since for r in self.french_ftt]
        if dates != sorted(set(dates)):
            raise ValueError("costs.french_ftt: the dates must be increasing, each once")
        return self

    def french_ftt_rate_on(self, d: dt.date | None = None) -> float:
        """The FTT rate in force on `d` (the latest rate when `d` is None)."""
        rate = 0.0
        for r in self.french_ftt:
            if d is not None and r.since > d:
                break
            rate = r.rate
        return rate

    @property
    def french_ftt_rate(self) -> float:
        """The rate in force now (the last of the schedule), for pages and prompts."""
        return self.french_ftt_rate_on(None)


class RiskConfig(_Frozen):
    lookback_sessions: int = Field(ge=20)
    cvar_level: float = Field(gt=0.5, lt=1)
    loss_aversion: float = Field(ge=1)
    alpha: float = Field(gt=0, le=1)
    beta: float = Field(gt=0, le=1)
    kelly_fraction: float = Field(gt=0, le=1)
    prospect_horizon_sessions: int = Field(ge=1)


class GuardrailsConfig(_Frozen):
    max_weight: float = Field(gt=0, le=1)
    min_cash: float = Field(ge=0, lt=1)
    max_gross_exposure: float = Field(gt=0, le=1)
    cvar_budget: float = Field(gt=0, lt=1)
    drawdown_limit: float = Field(gt=0, lt=1)
    drawdown_floor: float = Field(ge=0, le=1)
    drawdown_power: float = Field(ge=1)
    drawdown_peak_half_life_sessions: int = Field(ge=0)

    @property
    def peak_fade(self) -> float:
        """Per-session factor applied to the high-water mark (1.0: it never fades)."""
        h = self.drawdown_peak_half_life_sessions
        return 0.5 ** (1 / h) if h > 0 else 1.0
    trim_tolerance: float = Field(ge=0, lt=1)
    cvar_trim_tolerance: float = Field(ge=0, lt=1)


class ChurnConfig(_Frozen):
    """Churn guardrails: they only cut purchases (flip-flopping costs and loses)."""

    reentry_cooldown_sessions: int = Field(default=5, ge=0)  # no buy of a ticker sold in the last N sessions
    max_buys_per_week: int = Field(default=8, ge=0)  # buy orders per rolling week; 0 = no cap
    week_sessions: int = Field(default=5, ge=1)  # the rolling week, in sessions


ArmPolicy = Literal["rules", "hold", "llm", "random", "buy_and_hold", "equal_weight"]
PASSIVE_POLICIES = ("buy_and_hold", "equal_weight")


class ArmConfig(_Frozen):
    """One arm of the experiment: a paper portfolio with its own state under state/arms/<name>/."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    policy: ArmPolicy
    label: str = ""
    model: str | None = None  # llm: the model (default llm.model)
    prompt: Literal["behavioural", "neutral"] | None = None  # llm: the prompt family (engine.llm.prompt.PROMPTS)
    weights: dict[str, float] = {}  # buy_and_hold: target weights (sum <= 1)
    rebalance_band: float = Field(default=0.2, ge=0, le=1)  # equal_weight: sell beyond target * (1 + band), monthly
    match_turnover_of: str | None = None  # random: trade as much as this arm did that session
    seed: int = 0  # random: the seed of its draws
    trade_probability: float = Field(default=0.1, ge=0, le=1)  # random without a reference arm
    benchmark: str | None = None  # the [[benchmarks]] key whose line this arm's NAV is

    @property
    def passive(self) -> bool:
        """A passive baseline trades without guardrails and with fractional shares: a
        benchmark cut by the guardrails would not be the benchmark any more."""
        return self.policy in PASSIVE_POLICIES

    @property
    def title(self) -> str:
        return self.label or self.name


class ArmsConfig(_Frozen):
    """The arms run side by side. The state root mirrors the headline arm (what the site,
    the weekly report and the monitor read): the treatment with --policy llm, otherwise
    the first arm whose policy is --policy."""

    treatment: str | None = None  # the arm the hypothesis is about ...
    control: str | None = None  # ... and its neutral-prompt control
    reference: str | None = None  # the null hypothesis's benchmark arm (buy-and-hold SPY)
    arm: tuple[ArmConfig, ...] = ()

    @field_validator("treatment", "control", "reference", mode="before")
    @classmethod
    def _none_if_empty(cls, v: object) -> object:
        return None if v == "" else v  # TOML has no null: "" declares no such arm


class RulesConfig(_Frozen):
    max_positions: int = Field(ge=1)
    rsi_overbought: float = Field(gt=50, le=100)
    stop_loss: float = Field(gt=0, lt=1)
    rebalance_band: float = Field(ge=0, le=1)


class DataConfig(_Frozen):
    history_sessions: int = Field(ge=210)
    jump_threshold: float = Field(gt=0)
    max_missing_fraction: float = Field(ge=0, lt=1)
    retries: int = Field(ge=1)
    backoff_seconds: float = Field(ge=0)
    # --source csv: whether the files' past prices already contain later splits.
    csv_price_convention: Literal["split_adjusted", "unadjusted"] = "split_adjusted"


class ScheduleConfig(_Frozen):
    """When a run may book a session, and how much of a backlog one run takes on."""

    settle_minutes: float = Field(default=30.0, ge=0, le=24 * 60)
    max_sessions_per_run: int = Field(default=10, ge=1)


class TokenPrice(_Frozen):
    input: float = Field(ge=0)
    output: float = Field(ge=0)


class LLMConfig(_Frozen):
    model: str
    temperature: float = Field(ge=0, le=2)
    seed: int | None = None
    max_tokens: int = Field(ge=16)  # the answer's budget; a reasoning model gets the headroom on top
    reasoning_headroom_tokens: int = Field(default=8000, ge=0)
    reasoning_effort: str = "auto"  # "auto": the registry's default for the model
    timeout_seconds: float = Field(gt=0, le=600)
    reasoning_timeout_seconds: float = Field(default=180.0, gt=0, le=1800)
    max_retries: int = Field(ge=0, le=10)
    length_retry_factor: float = Field(default=2.0, ge=1)
    response_format: Literal["json_schema", "json_object", "text"] = "json_schema"
    daily_budget_usd: float = Field(ge=0)
    check_model: bool = True
    deployments: dict[str, str] = {}  # Azure deployment name -> model id in the registry
    prices_usd_per_million_tokens: dict[str, TokenPrice] = {}
    knowledge_cutoff: dict[str, dt.date] = {}

    def info(self, model: str):
        """The registry row of `model` (engine/llm/models.toml), deployments mapped."""
        from engine.llm.registry import lookup

        return lookup(model, self.deployments)

    def price(self, model: str) -> TokenPrice | None:
        """USD per million tokens: the config's table first, then the registry; None: unknown."""
        price = self.prices_usd_per_million_tokens.get(model)
        if price is not None:
            return price
        info = self.info(model)
        if info.priced:
            return TokenPrice(input=info.price_input, output=info.price_output)
        return None

    def cutoff(self, model: str) -> dt.date | None:
        """The model's knowledge cutoff: the config's table first, then the registry."""
        return self.knowledge_cutoff.get(model) or self.info(model).knowledge_cutoff

    def cost_usd(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """What a call costs; None for a model without a known price."""
        price = self.price(model)
        if price is None:
            return None
        return (prompt_tokens * price.input + completion_tokens * price.output) / 1e6


class FXConfig(_Frozen):
    eurusd: str


class Config(_Frozen):
    portfolio: PortfolioConfig
    costs: CostsConfig
    risk: RiskConfig
    guardrails: GuardrailsConfig
    rules: RulesConfig
    data: DataConfig
    llm: LLMConfig
    fx: FXConfig
    assets: tuple[Asset, ...]
    benchmarks: tuple[Benchmark, ...]
    schedule: ScheduleConfig = ScheduleConfig()
    churn: ChurnConfig = ChurnConfig()
    arms: ArmsConfig = ArmsConfig()

    @model_validator(mode="after")
    def _check_universe(self) -> Config:
        tickers = [a.ticker for a in self.assets]
        if not tickers:
            raise ValueError("the universe has no assets")
        dupes = sorted({t for t in tickers if tickers.count(t) > 1})
        if dupes:
            raise ValueError(f"duplicate tickers in the universe: {', '.join(dupes)}")
        keys = [b.key for b in self.benchmarks]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate benchmark keys")
        _check_arms(self)
        g = self.guardrails
        if g.min_cash + g.max_gross_exposure > 1 + 1e-12:
            raise ValueError("guardrails: min_cash + max_gross_exposure must not exceed 1")
        return self

    def without_arms(self) -> Config:
        """A copy with no arms (for a universe the default arms do not fit)."""
        return self.with_overrides(arms={"arm": [], "treatment": None, "control": None, "reference": None})

    @cached_property
    def arm_by_name(self) -> dict[str, ArmConfig]:
        return {a.name: a for a in self.arms.arm}

    @cached_property
    def asset_by_ticker(self) -> dict[str, Asset]:
        return {a.ticker: a for a in self.assets}

    @property
    def tickers(self) -> list[str]:
        """The tradable assets, in universe order."""
        return [a.ticker for a in self.assets]

    @property
    def instruments(self) -> dict[str, Asset | Benchmark]:
        """Every priced instrument (assets, then benchmarks not already assets) by ticker."""
        out: dict[str, Asset | Benchmark] = dict(self.asset_by_ticker)
        for b in self.benchmarks:
            out.setdefault(b.ticker, b)
        return out

    def with_overrides(self, **sections: dict[str, Any]) -> Config:
        """A copy with some keys replaced, e.g. ``with_overrides(portfolio={"whole_shares": False})``."""
        return _validate(_merge(self.model_dump(), sections))


def _check_arms(cfg: Config) -> None:
    names = [a.name for a in cfg.arms.arm]
    if len(set(names)) != len(names):
        raise ValueError("duplicate arm names")
    known, tickers, keys = set(names), set(cfg.tickers), {b.key for b in cfg.benchmarks}
    for a in cfg.arms.arm:
        if a.match_turnover_of is not None and (a.match_turnover_of not in known or a.match_turnover_of == a.name):
            raise ValueError(f"arm {a.name}: match_turnover_of {a.match_turnover_of!r} is not another arm")
        bad = sorted(set(a.weights) - tickers)
        if bad:
            raise ValueError(f"arm {a.name}: weights name tickers outside the universe: {', '.join(bad)} "
                             "(a custom universe declares its own [[arms.arm]])")
        if sum(a.weights.values()) > 1 + 1e-9 or any(w < 0 for w in a.weights.values()):
            raise ValueError(f"arm {a.name}: weights must be non-negative and sum to at most 1")
        if a.policy == "buy_and_hold" and not a.weights:
            raise ValueError(f"arm {a.name}: buy_and_hold needs weights")
        if a.benchmark is not None and a.benchmark not in keys:
            raise ValueError(f"arm {a.name}: benchmark {a.benchmark!r} is not a [[benchmarks]] key")
        if a.prompt is not None and a.policy != "llm":
            raise ValueError(f"arm {a.name}: only an llm arm has a prompt")
    for ref in (cfg.arms.treatment, cfg.arms.control, cfg.arms.reference):
        if ref is not None and ref not in known:
            raise ValueError(f"arms: {ref!r} is not a declared arm")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _validate(raw: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(f"invalid configuration at {where}: {first['msg']}") from None


def default_config_text() -> str:
    return resources.files("engine").joinpath("config.toml").read_text(encoding="utf-8")


def load_config(path: str | Path | None = None) -> Config:
    """The defaults, with the keys of the TOML file at `path` (if any) merged on top."""
    raw = tomllib.loads(default_config_text())
    if path is not None:
        p = Path(path)
        try:
            user = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {p}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
        if "assets" in user and "arms" not in user:
            raw["arms"] = _arms_for_universe(raw["arms"], {a["ticker"] for a in user["assets"]},
                                             {b["key"] for b in raw.get("benchmarks", [])}, p)
        raw = _merge(raw, user)
    return _validate(raw)


def _arms_for_universe(arms: dict[str, Any], tickers: set[str], benchmark_keys: set[str], where: Path) -> dict[str, Any]:
    """The default arms that fit a universe the user declared (`assets`) without declaring its
    own arms: a baseline holding a ticker outside it (buy-and-hold SPY without SPY) is left out,
    and said so, rather than failing the whole configuration."""
    keep, dropped = [], []
    for arm in arms.get("arm", []):
        fits = set(arm.get("weights", {})) <= tickers and arm.get("benchmark") in (None, *benchmark_keys)
        (keep if fits else dropped).append(arm)
    out = {**arms, "arm": keep}
    names = {a["name"] for a in keep}
    for role in ("treatment", "control", "reference"):
        if out.get(role) not in names:
            out[role] = None
    if dropped:
        log.warning("%s declares its own universe but no [[arms.arm]]: the default arms %s hold tickers outside it "
                    "and are left out (declare arms to compare against a baseline)", where,
                    ", ".join(a["name"] for a in dropped))
    return out
