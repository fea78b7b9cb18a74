"""The built-in dataset "synthetic": a small multivariate seasonal series with an hourly ``date``."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ddtime.driver.checks import check_int

SYNTHETIC = "synthetic"


def generate_seasonal(*, length: int = 4000, channels: int = 7, seed: int = 0) -> pd.DataFrame:
    """``length`` hourly rows from 2020-01-01: ``date``, then ``x0 .. x{channels-2}`` and ``OT``.

    Each channel is ``level + scale * (a * daily + b * weekly + c * trend + d * common + noise)``:
    a daily cycle (period 24, with a second harmonic) and a weekly one (period 168), each shifted
    by a small per-channel phase; a slow trend; a shared AR(1) factor (rho 0.95) that correlates the
    channels; independent Gaussian noise (std 0.15). Deterministic for a seed (numpy PCG64).
    """
    length = check_int("length", length, minimum=2)
    channels = check_int("channels", channels)
    seed = check_int("seed", seed, minimum=0)
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float64)[None, :]

    phase_day = rng.uniform(0, np.pi / 3, (channels, 1))
    phase_week = rng.uniform(0, np.pi / 3, (channels, 1))
    daily = np.sin(2 * np.pi * t / 24 + phase_day) + 0.4 * np.sin(4 * np.pi * t / 24 + 2 * phase_day)
    weekly = np.sin(2 * np.pi * t / 168 + phase_week)
    trend = t / length
    common = np.empty(length)
    shocks = rng.normal(0.0, np.sqrt(1 - 0.95**2), length)
    common[0] = shocks[0] / np.sqrt(1 - 0.95**2)
    for i in range(1, length):
        common[i] = 0.95 * common[i - 1] + shocks[i]

    a = rng.uniform(0.6, 1.4, (channels, 1)) * rng.choice([-1.0, 1.0], (channels, 1))
    b = rng.uniform(0.3, 1.0, (channels, 1))
    c = rng.uniform(-1.5, 1.5, (channels, 1))
    d = rng.uniform(0.2, 0.6, (channels, 1))
    level = rng.uniform(-5.0, 5.0, (channels, 1))
    scale = rng.uniform(0.5, 3.0, (channels, 1))
    noise = rng.normal(0.0, 0.15, (channels, length))
    values = level + scale * (a * daily + b * weekly + c * trend + d * common[None, :] + noise)

    names = [f"x{i}" for i in range(channels - 1)] + ["OT"]
    frame = pd.DataFrame(values.T, columns=names)
    frame.insert(0, "date", pd.date_range("2020-01-01", periods=length, freq="h"))
    return frame
