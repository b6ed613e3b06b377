"""Argument types for every numeric CLI option: a bad value is argparse's one-line usage error (exit 2),
never a silent default, a traceback, or a failure after minutes of work. Limits are sanity bounds."""
from __future__ import annotations

import argparse
import math

MAX_COUNT = 1_000_000
MAX_SEED = (1 << 64) - 1


def _int(text: str, low: int, high: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{value} is out of range: {what} is {low} to {high}")
    return value


def count(text: str) -> int:
    """A positive count: steps, frames, pixels, runs, plans, population..."""
    return _int(text, 1, MAX_COUNT, "a count")


def nonneg_count(text: str) -> int:
    """Zero allowed: warm-up runs."""
    return _int(text, 0, MAX_COUNT, "a count")


def seed(text: str) -> int:
    """Seeds are unsigned 64-bit everywhere (the portable noise generator's range)."""
    return _int(text, 0, MAX_SEED, "a seed")


def positive_float(text: str) -> float:
    """A finite number > 0: budgets, memory limits."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number > 0")
    return value
