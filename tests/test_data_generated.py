"""ddtime.driver.data.generate_seasonal: the built-in "synthetic" dataset."""
import numpy as np
import pandas as pd
import pytest

import ddtime.driver.data as D


def test_deterministic_for_a_seed():
    a = D.generate_seasonal(length=500, channels=4, seed=3)
    pd.testing.assert_frame_equal(a, D.generate_seasonal(length=500, channels=4, seed=3))
    assert not np.allclose(a["OT"], D.generate_seasonal(length=500, channels=4, seed=4)["OT"])


def test_layout_and_defaults():
    frame = D.generate_seasonal()
    assert frame.shape == (4000, 8)
    assert list(frame.columns) == ["date", "x0", "x1", "x2", "x3", "x4", "x5", "OT"]
    assert (frame["date"].diff().dropna() == pd.Timedelta(hours=1)).all()
    assert frame["date"].iloc[0] == pd.Timestamp("2020-01-01")
    assert frame.drop(columns="date").notna().all().all()
    assert list(D.generate_seasonal(length=10, channels=1).columns) == ["date", "OT"]


def test_daily_and_weekly_periods_and_cross_channel_correlation():
    length = 168 * 24  # both periods fall on exact FFT bins
    values = D.generate_seasonal(length=length, seed=0).drop(columns="date").to_numpy()
    spectrum = np.abs(np.fft.rfft(values - values.mean(0), axis=0))
    median = np.median(spectrum, axis=0)
    assert (spectrum[length // 24] > 20 * median).all()
    assert (spectrum[length // 168] > 5 * median).all()
    corr = np.corrcoef(values.T)
    assert np.abs(corr[np.triu_indices(7, 1)]).mean() > 0.3


def test_is_the_default_dataset():
    data = D.load_forecasting(None, seq_len=96, pred_len=96)
    assert data.name == "synthetic" and data.channels[-1] == "OT"
    assert data.borders == {"train": (0, 2800), "val": (2704, 3200), "test": (3104, 4000)}
    assert D.load_forecasting("synthetic", seq_len=96, pred_len=96).borders == data.borders


@pytest.mark.parametrize("kwargs, error", [
    ({"length": 1}, ValueError), ({"channels": 0}, ValueError), ({"seed": -1}, ValueError),
    ({"length": 2.5}, TypeError), ({"channels": True}, TypeError),
])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        D.generate_seasonal(**kwargs)
