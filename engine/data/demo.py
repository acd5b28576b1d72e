"""The offline demo market: a seeded synthetic panel on the real exchange calendars.

:class:`DemoSource` returns the same :class:`~engine.data.market.MarketData` as a live
source, for the instruments of the configuration plus EURUSD, with no network. It is a
factor model (global, US and Europe equity, gold, long US rates, EURUSD and a few
sector factors) whose shocks are GARCH(1,1) processes with Student-t innovations: fat
tails, volatility clustering and realistic correlations. The per-instrument parameters
(reference level, volatility, drift, loadings, typical volume) are data, in
``engine/data/demo_params.toml``.

Determinism is per seed and per date: the whole epoch (every weekday from
``calendars.CALENDAR_START`` to ``calendars.CALENDAR_END``) is simulated once per seed
and cached, every series draws from its own random stream (keyed by seed and name),
and a bar depends only on the latent path at its date and the weekday before. So the
bar of a given date never depends on the requested range, on the other instruments of
the configuration, or on the exchange calendars of the others.

How a bar is made: each series has a latent log-price on every weekday (holidays
included). On a session of the instrument's own exchange, the close is the latent
value; the open is the latent value of the weekday before plus a share of the day's
move (so whatever moved while the exchange was closed shows up as an opening gap);
high and low add positive wicks around the open-close body; the volume scales with the
size of the move and the volatility regime.
"""

from __future__ import annotations

import math
import tomllib
import zlib
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from importlib import resources
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engine.config import Config
from engine.data import calendars
from engine.data.market import MarketData
from engine.errors import DataUnavailable

PARAMS_FILE = "demo_params.toml"
_FX = "__EURUSD__"  # internal name of the EURUSD series (never a config ticker)


# --------------------------------------------------------------------------- params


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _ModelParams(_Frozen):
    reference_date: date
    days_per_year: float = Field(gt=200, lt=366)
    student_t_df: float = Field(gt=2.0)
    innovation_clip: float = Field(gt=1.0)
    max_daily_log_return: float = Field(gt=0.0, lt=1.0)
    reference_jitter_years: float = Field(ge=0.0, le=1.0)


class _GarchParams(_Frozen):
    alpha: float = Field(ge=0.0, lt=1.0)
    beta: float = Field(ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _stationary(self) -> _GarchParams:
        if self.alpha + self.beta >= 1.0:
            raise ValueError("alpha + beta must be below 1 (covariance stationarity)")
        return self


class _GarchSection(_Frozen):
    factor: _GarchParams
    idiosyncratic: _GarchParams


class _BarParams(_Frozen):
    overnight_share: float = Field(ge=0.0, le=1.0)
    open_noise: float = Field(ge=0.0)
    wick_scale: float = Field(ge=0.0)
    volume_noise: float = Field(ge=0.0)
    volume_move_sensitivity: float = Field(ge=0.0)
    volume_regime_sensitivity: float = Field(ge=0.0)


class _Factors(_Frozen):
    names: tuple[str, ...]


class _FXParams(_Frozen):
    reference_level: float = Field(gt=0)
    vol: float = Field(gt=0, lt=2)
    drift: float = Field(gt=-1, lt=1)
    loadings: dict[str, float] = {}


class _InstrumentParams(_Frozen):
    currency: Literal["EUR", "USD"]
    volume: float = Field(gt=0)
    # a factor-model instrument
    reference_level: float | None = Field(default=None, gt=0)
    vol: float | None = Field(default=None, gt=0, lt=2)
    drift: float | None = Field(default=None, gt=-1, lt=1)
    loadings: dict[str, float] = {}
    add_fx: bool = False
    # ... or a tracker of another instrument
    tracks: str | None = None
    index_divisor: float = Field(default=1.0, gt=0)
    tracking_factor: float = Field(default=1.0, gt=0)
    tracking_error_bps: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _kind(self) -> _InstrumentParams:
        model_keys = (self.reference_level, self.vol, self.drift)
        if self.tracks is None and any(v is None for v in model_keys):
            raise ValueError("needs reference_level, vol and drift (or `tracks`)")
        if self.tracks is not None and (any(v is not None for v in model_keys) or self.loadings):
            raise ValueError("a tracker takes its path from `tracks`: no level, vol, drift or loadings")
        return self


class _SplitEvent(_Frozen):
    ticker: str
    date: date
    ratio: float = Field(gt=0)  # new shares per old share (1.1 = one bonus share per ten)


class DemoParams(_Frozen):
    model: _ModelParams
    garch: _GarchSection
    bars: _BarParams
    factors: _Factors
    fx: _FXParams
    instruments: dict[str, _InstrumentParams]
    splits: tuple[_SplitEvent, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> DemoParams:
        known = set(self.factors.names)
        if len(known) != len(self.factors.names):
            raise ValueError("duplicate factor names")
        series: list[tuple[str, dict[str, float]]] = [("fx", self.fx.loadings)]
        series += [(t, p.loadings) for t, p in self.instruments.items() if p.tracks is None]
        for name, loadings in series:
            unknown = sorted(set(loadings) - known)
            if unknown:
                raise ValueError(f"{name}: unknown factor(s) {', '.join(unknown)}")
            if sum(w * w for w in loadings.values()) >= 1.0:
                raise ValueError(f"{name}: the squared loadings must sum to less than 1")
        for t, p in self.instruments.items():
            if p.tracks is not None:
                target = self.instruments.get(p.tracks)
                if target is None or target.tracks is not None:
                    raise ValueError(f"{t}: tracks {p.tracks!r}, which is not a factor-model instrument")
        return self


@lru_cache(maxsize=1)
def load_params() -> DemoParams:
    """The demo parameters from ``engine/data/demo_params.toml`` (read once)."""
    text = resources.files("engine.data").joinpath(PARAMS_FILE).read_text(encoding="utf-8")
    try:
        return DemoParams.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"engine/data/{PARAMS_FILE} is not valid TOML: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise ValueError(f"invalid demo parameters at {where}: {first['msg']}") from None


# ----------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class _Series:
    """One latent series on the weekday grid (all arrays read-only, length n)."""

    x: np.ndarray  # log-close
    r: np.ndarray  # log-return of each weekday (x[t] - x[t-1]; r[0] is the move into day 0)
    sig: np.ndarray  # conditional daily volatility
    sig_unc: float  # unconditional daily volatility
    gap_draw: np.ndarray  # N(0, 1): open noise
    up_draw: np.ndarray  # Exp(1): upper wick
    down_draw: np.ndarray  # Exp(1): lower wick
    volume_draw: np.ndarray  # N(0, 1): volume noise


@dataclass(frozen=True)
class _Simulation:
    grid: pd.DatetimeIndex  # every weekday of the epoch
    series: dict[str, _Series]  # by ticker, plus _FX


def _rng(seed: int, purpose: str, name: str) -> np.random.Generator:
    """An independent stream per (seed, purpose, name): adding a series changes no other."""
    key = zlib.crc32(f"{purpose}:{name}".encode())
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, key]))


def _t_innovations(rng: np.random.Generator, n: int, df: float, clip: float) -> np.ndarray:
    """Student-t draws scaled to unit variance, truncated at +-clip."""
    u = rng.standard_t(df, n) * math.sqrt((df - 2.0) / df)
    return np.clip(u, -clip, clip)


def _garch(u: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GARCH(1,1) with unit unconditional variance, column by column (vectorised).

    Returns the shocks e[t] = sqrt(h[t]) * u[t] and the conditional variances h[t].
    """
    n, m = u.shape
    omega = 1.0 - alpha - beta
    e = np.empty_like(u)
    h = np.empty_like(u)
    ht = np.ones(m)
    tmp = np.empty(m)
    for t in range(n):
        h[t] = ht
        np.sqrt(ht, out=tmp)
        np.multiply(tmp, u[t], out=tmp)
        e[t] = tmp
        # h[t+1] = omega + alpha * e[t]^2 + beta * h[t]
        np.multiply(tmp, tmp, out=tmp)
        np.multiply(tmp, alpha, out=tmp)
        np.multiply(ht, beta, out=ht)
        np.add(ht, tmp, out=ht)
        np.add(ht, omega, out=ht)
    return e, h


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@lru_cache(maxsize=8)
def _simulate(seed: int) -> _Simulation:
    """The whole epoch for one seed: every series on every weekday."""
    p = load_params()
    mp = p.model
    grid = pd.bdate_range(calendars.CALENDAR_START, calendars.CALENDAR_END).as_unit("ns")
    n = len(grid)
    ref = pd.Timestamp(mp.reference_date).as_unit("ns")
    if ref not in grid:
        raise ValueError(f"demo reference_date {mp.reference_date} is not a weekday of the epoch")
    ref_pos = grid.get_loc(ref)
    dpy = mp.days_per_year
    df, clip = mp.student_t_df, mp.innovation_clip

    factors = list(p.factors.names)
    # the factor-model series: EURUSD first, then every instrument that is not a tracker
    model_specs: dict[str, _FXParams | _InstrumentParams] = {_FX: p.fx}
    model_specs.update({t: s for t, s in p.instruments.items() if s.tracks is None})
    names = list(model_specs)
    k, m = len(factors), len(names)

    u = np.empty((n, k + m))
    for j, f in enumerate(factors):
        u[:, j] = _t_innovations(_rng(seed, "factor", f), n, df, clip)
    for j, name in enumerate(names):
        u[:, k + j] = _t_innovations(_rng(seed, "idio", name), n, df, clip)
    alpha = np.r_[np.full(k, p.garch.factor.alpha), np.full(m, p.garch.idiosyncratic.alpha)]
    beta = np.r_[np.full(k, p.garch.factor.beta), np.full(m, p.garch.idiosyncratic.beta)]
    e, h = _garch(u, alpha, beta)

    w = np.array([[model_specs[s].loadings.get(f, 0.0) for f in factors] for s in names])
    c2 = 1.0 - (w * w).sum(axis=1)
    z = e[:, :k] @ w.T + e[:, k:] * np.sqrt(c2)  # unit-variance standardized returns
    zvar = h[:, :k] @ (w * w).T + h[:, k:] * c2  # their conditional variances

    vol = np.array([model_specs[s].vol for s in names], dtype=float)
    drift = np.array([model_specs[s].drift for s in names], dtype=float)
    vol_d = vol / math.sqrt(dpy)
    mu_d = (drift - 0.5 * vol * vol) / dpy
    r_all = np.clip(mu_d + vol_d * z, -mp.max_daily_log_return, mp.max_daily_log_return)
    sig_all = vol_d * np.sqrt(zvar)
    fx_col = names.index(_FX)

    def draws(name: str) -> dict[str, np.ndarray]:
        g = _rng(seed, "bars", name)
        return {
            "gap_draw": g.standard_normal(n),
            "up_draw": g.standard_exponential(n),
            "down_draw": g.standard_exponential(n),
            "volume_draw": _rng(seed, "volume", name).standard_normal(n),
        }

    def anchored(r: np.ndarray, level: float, annual_vol: float, name: str) -> np.ndarray:
        """The cumulated returns, shifted so that the reference date sits near `level`."""
        spread = annual_vol * math.sqrt(mp.reference_jitter_years)
        jitter = _rng(seed, "level", name).normal(0.0, spread) if spread > 0 else 0.0
        x = np.cumsum(r)
        return x + (math.log(level) + jitter - x[ref_pos])

    series: dict[str, _Series] = {}
    for j, name in enumerate(names):
        spec = model_specs[name]
        r = r_all[:, j].copy()
        sig = sig_all[:, j].copy()
        sig_unc = float(vol_d[j])
        if isinstance(spec, _InstrumentParams) and spec.add_fx:
            r += r_all[:, fx_col]
            sig = np.sqrt(sig * sig + sig_all[:, fx_col] ** 2)
            sig_unc = math.hypot(sig_unc, float(vol_d[fx_col]))
        assert spec.reference_level is not None
        x = anchored(r, spec.reference_level, sig_unc * math.sqrt(dpy), name)
        series[name] = _Series(x=x, r=r, sig=sig, sig_unc=sig_unc, **draws(name))

    for name, spec in p.instruments.items():
        if spec.tracks is None:
            continue
        target = series[spec.tracks]
        te = _rng(seed, "tracking", name).standard_normal(n) * (spec.tracking_error_bps * 1e-4)
        x = target.x + math.log(spec.tracking_factor / spec.index_divisor) + te
        r = np.empty(n)
        r[0] = target.r[0]
        r[1:] = np.diff(x)
        series[name] = _Series(
            x=x,
            r=r,
            sig=target.sig,
            sig_unc=target.sig_unc,
            gap_draw=target.gap_draw,
            up_draw=target.up_draw,
            down_draw=target.down_draw,
            volume_draw=_rng(seed, "volume", name).standard_normal(n),
        )

    for s in series.values():
        if not (np.isfinite(s.x).all() and np.isfinite(s.sig).all()):  # pragma: no cover
            raise RuntimeError("demo simulation produced a non-finite value")
        for a in (s.x, s.r, s.sig, s.gap_draw, s.up_draw, s.down_draw, s.volume_draw):
            if a.flags.writeable:
                _readonly(a)
    return _Simulation(grid=grid, series=series)


def _bars(s: _Series, pos: np.ndarray, bp: _BarParams, typical_volume: float) -> tuple[np.ndarray, ...]:
    """Open, high, low, close, volume of series `s` on the grid positions `pos` (sessions).

    Only the latent values at `pos` and `pos - 1` are used, so a bar never depends on
    which other dates are requested.
    """
    close = s.x[pos]
    prev = np.where(pos > 0, s.x[np.maximum(pos - 1, 0)], s.x[0] - s.r[0])
    r = s.r[pos]
    sig = s.sig[pos]
    open_ = prev + bp.overnight_share * r + bp.open_noise * sig * s.gap_draw[pos]
    top = np.maximum(open_, close)
    bottom = np.minimum(open_, close)
    high = top + bp.wick_scale * sig * s.up_draw[pos]
    low = bottom - bp.wick_scale * sig * s.down_draw[pos]
    move = np.abs(r) / sig - math.sqrt(2.0 / math.pi)
    log_v = (
        bp.volume_noise * s.volume_draw[pos]
        - 0.5 * bp.volume_noise**2
        + bp.volume_move_sensitivity * move
        + bp.volume_regime_sensitivity * np.log(sig / s.sig_unc)
    )
    volume = np.maximum(np.rint(typical_volume * np.exp(log_v)), 1.0)
    return np.exp(open_), np.exp(high), np.exp(low), np.exp(close), volume


# --------------------------------------------------------------------------- source


class DemoSource:
    """A seeded synthetic market: same instruments, real calendars, no network."""

    name = "demo"
    synthetic = True

    def __init__(self, seed: int = 42):
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"DemoSource(seed={self.seed})"

    def load(self, config: Config, start: object, end: object) -> MarketData:
        """Daily bars of every instrument of `config` from `start` to `end` (inclusive)."""
        start_ts, end_ts = calendars.to_session(start), calendars.to_session(end)
        lo, hi = calendars.CALENDAR_START, calendars.CALENDAR_END
        if start_ts < lo or end_ts > hi:
            raise DataUnavailable(
                f"the demo market covers {lo.date()} to {hi.date()}; "
                f"requested {start_ts.date()} to {end_ts.date()}"
            )
        if start_ts > end_ts:
            raise DataUnavailable(f"empty date range: start {start_ts.date()} is after end {end_ts.date()}")

        params = load_params()
        instruments = config.instruments
        for ticker, inst in instruments.items():
            spec = params.instruments.get(ticker)
            if spec is None:
                raise DataUnavailable(
                    f"the demo market has no parameters for {ticker!r} (add it to engine/data/{PARAMS_FILE})"
                )
            if spec.currency != inst.currency:
                raise DataUnavailable(
                    f"the demo market prices {ticker} in {spec.currency}, the configuration says {inst.currency}"
                )

        codes = sorted({inst.calendar for inst in instruments.values()})
        # freq dropped: a one-exchange index carries the calendar's CustomBusinessDay, a
        # union does not; without it a sub-range equals the slice of a longer range.
        index = pd.DatetimeIndex(calendars.union_sessions(codes, start_ts, end_ts), freq=None)
        if len(index) == 0:
            raise DataUnavailable(
                f"no session of {', '.join(codes)} between {start_ts.date()} and {end_ts.date()}"
            )

        sim = _simulate(self.seed)
        grid_pos = sim.grid.get_indexer(index)
        if (grid_pos < 0).any():  # pragma: no cover - sessions are always weekdays
            raise DataUnavailable("a session of the requested range is not a weekday of the demo grid")
        own = {code: index.isin(calendars.sessions(code, start_ts, end_ts)) for code in codes}

        tickers = list(instruments)
        shape = (len(index), len(tickers))
        out = {f: np.full(shape, np.nan) for f in ("open", "high", "low", "close", "volume")}
        for j, (ticker, inst) in enumerate(instruments.items()):
            rows = own[inst.calendar]
            bars = _bars(sim.series[ticker], grid_pos[rows], params.bars, params.instruments[ticker].volume)
            for f, values in zip(("open", "high", "low", "close", "volume"), bars, strict=True):
                out[f][rows, j] = values

        columns = pd.Index(tickers)

        def frame(values: np.ndarray) -> pd.DataFrame:
            return pd.DataFrame(values, index=index, columns=columns)

        split_ratios = _apply_splits(out, index, tickers, params.splits)
        fx = pd.Series(np.exp(sim.series[_FX].x[grid_pos]), index=index, name=config.fx.eurusd)
        return MarketData(
            open=frame(out["open"]),
            high=frame(out["high"]),
            low=frame(out["low"]),
            close=frame(out["close"]),
            volume=frame(out["volume"]),
            dividends=frame(np.zeros(shape)),
            splits=frame(split_ratios),
            fx_eurusd=fx,
            source=self.name,
            synthetic=True,
            issues=(),
            price_convention="unadjusted",
        )


def _apply_splits(
    bars: dict[str, np.ndarray], index: pd.DatetimeIndex, tickers: list[str], splits: tuple[_SplitEvent, ...]
) -> np.ndarray:
    """Put the simulated bars (in today's share units) in the units they traded in.

    Before a split of ratio r, one share was worth r of today's: its price was r times
    higher and its volume r times lower. The prices are therefore *unadjusted*, as
    traded, and the split event sits on its date: the engine must book it. Returns
    the split-ratio frame (1.0 where none). A split after the window still sets the
    units of the window, so that a bar never depends on which dates are requested.
    """
    ratios = np.ones((len(index), len(tickers)))
    col = {t: j for j, t in enumerate(tickers)}
    for ev in splits:
        j = col.get(ev.ticker)
        if j is None:
            continue
        before = index < pd.Timestamp(ev.date)
        for f in ("open", "high", "low", "close"):
            bars[f][before, j] *= ev.ratio
        bars["volume"][before, j] = np.maximum(np.rint(bars["volume"][before, j] / ev.ratio), 1.0)
        on = index == pd.Timestamp(ev.date)
        ratios[on, j] *= ev.ratio
    return ratios
