"""Shared fixtures: a demo market (seeded, offline) and the default configuration."""

from __future__ import annotations

import pandas as pd
import pytest

from engine.config import Config, load_config
from engine.data.demo import DemoSource
from engine.data.market import MarketData


@pytest.fixture(scope="session")
def config() -> Config:
    return load_config()


@pytest.fixture(scope="session")
def demo_market(config: Config) -> MarketData:
    """2023-01-02 .. 2024-12-31 of the seed-7 demo market (warm-up included)."""
    return DemoSource(seed=7).load(config, pd.Timestamp("2023-01-02"), pd.Timestamp("2024-12-31"))
