"""Backtests: the daily step in a loop, benchmarks, metrics and the verdict on the null hypothesis."""
