"""ddtime.driver.data.load_forecasting: split borders (README numbers), scaling, windows, condtsf, features."""
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import ddtime.driver.data as D

SHARED = D.shared_data_dir()

# shared/data/README.md: (train, val, test) sizes and (first, last) dates of each split.
README_SPLITS = {
    "ETTh1": ((8640, 2880, 2880), ("2016-07-01 00:00", "2017-06-25 23:00", "2017-06-26 00:00",
                                   "2017-10-23 23:00", "2017-10-24 00:00", "2018-02-20 23:00")),
    "ETTh2": ((8640, 2880, 2880), ("2016-07-01 00:00", "2017-06-25 23:00", "2017-06-26 00:00",
                                   "2017-10-23 23:00", "2017-10-24 00:00", "2018-02-20 23:00")),
    "ETTm1": ((34560, 11520, 11520), ("2016-07-01 00:00", "2017-06-25 23:45", "2017-06-26 00:00",
                                      "2017-10-23 23:45", "2017-10-24 00:00", "2018-02-20 23:45")),
    "exchange_rate": ((5311, 760, 1517), ("1990-01-01", "2004-07-16", "2004-07-17", "2006-08-15",
                                          "2006-08-16", "2010-10-10")),
    "national_illness": ((676, 97, 193), ("2002-01-01", "2014-12-09", "2014-12-16", "2016-10-18",
                                          "2016-10-25", "2020-06-30")),
}


def write_frame(tmp_path, frame, name="custom.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def hourly(values: dict, length: int) -> pd.DataFrame:
    frame = pd.DataFrame(values)
    frame.insert(0, "date", pd.date_range("2021-01-01", periods=length, freq="h"))
    return frame


@pytest.mark.skipif(SHARED is None, reason="shared data folder not found (set DDTIME_SHARED_DATA)")
@pytest.mark.parametrize("name", list(README_SPLITS))
def test_standard_split_borders_match_the_readme(name):
    path = SHARED / f"{name}.csv"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    (n_train, n_val, n_test), dates = README_SPLITS[name]
    seq_len, pred_len = (36, 24) if name == "national_illness" else (96, 96)
    data = D.load_forecasting(name, seq_len=seq_len, pred_len=pred_len)
    end_val = n_train + n_val
    assert data.borders == {"train": (0, n_train), "val": (n_train - seq_len, end_val),
                            "test": (end_val - seq_len, end_val + n_test)}
    n = len(data.channels)
    assert data.train.shape == (n, n_train) and data.train.dtype == torch.float32
    assert data.val.shape == (n, n_val + seq_len) and data.test.shape == (n, n_test + seq_len)
    # TSLib's __len__: len(data_x) - seq_len - pred_len + 1
    assert data.windows("test").shape == (n_test - pred_len + 1, n, seq_len + pred_len)
    frame = D.read_csv(path)
    got = [frame["date"].iloc[i] for i in (0, n_train - 1, n_train, end_val - 1, end_val, end_val + n_test - 1)]
    assert got == [pd.Timestamp(d) for d in dates]
    # scaled with the training rows' statistics (sklearn StandardScaler)
    raw = torch.tensor(frame[data.channels].to_numpy().T)
    expected = (raw - raw[:, :n_train].mean(1, keepdim=True)) / raw[:, :n_train].std(1, correction=0, keepdim=True)
    torch.testing.assert_close(data.test, expected[:, end_val - seq_len:end_val + n_test].float())


def test_scaler_matches_sklearn_and_ignores_later_rows(tmp_path):
    sklearn = pytest.importorskip("sklearn.preprocessing")
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1000, 2)) * [1.0, 3.0] + [0.5, -2.0]
    shifted = base.copy()
    shifted[700:] += 1e6  # validation and test rows of the 7:1:2 split
    stats = []
    for values in (base, shifted):
        path = write_frame(tmp_path, hourly({"a": values[:, 0], "OT": values[:, 1]}, 1000))
        data = D.load_forecasting(path, seq_len=24, pred_len=24)
        stats.append((data.scaler.mean, data.scaler.std))
        ref = sklearn.StandardScaler().fit(values[:700])
        np.testing.assert_allclose(data.scaler.mean.numpy(), ref.mean_, rtol=1e-12)
        np.testing.assert_allclose(data.scaler.std.numpy(), ref.scale_, rtol=1e-12)
    torch.testing.assert_close(stats[0], stats[1], rtol=0, atol=0)
    assert abs(float(data.test.mean())) > 1e5  # the offset is visible in the scaled test rows
    # condtsf z-scores over the whole series, so the same offset moves its mean
    assert float(D.load_forecasting(path, protocol="condtsf", seq_len=24, pred_len=24).scaler.mean[0]) > 1e5


def test_condtsf_scale_train_ignores_test_rows(tmp_path):
    """scale="train" fits the condtsf statistics on the training rows only (unbiased std): an offset
    on the test rows moves the default (whole-series) scaler but not this one."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=(1000, 2)) * [1.0, 3.0] + [0.5, -2.0]
    shifted = base.copy()
    shifted[700:] += 1e6  # condtsf test rows: [int(0.7 * 1000), 1000)
    fitted = []
    for values in (base, shifted):
        path = write_frame(tmp_path, hourly({"a": values[:, 0], "OT": values[:, 1]}, 1000))
        data = D.load_forecasting(path, protocol="condtsf", seq_len=24, pred_len=24, scale="train")
        assert data.scale == "train"
        np.testing.assert_allclose(data.scaler.mean.numpy(), values[:700].mean(0), rtol=1e-12)
        np.testing.assert_allclose(data.scaler.std.numpy(), values[:700].std(0, ddof=1), rtol=1e-12)
        fitted.append(data.train)
    torch.testing.assert_close(fitted[0], fitted[1], rtol=0, atol=0)
    assert D.load_forecasting(path, protocol="condtsf", seq_len=24, pred_len=24).scale == "series"
    with pytest.raises(ValueError, match="scale"):
        D.load_forecasting(path, protocol="condtsf", seq_len=24, pred_len=24, scale="test")


def test_inverse_transform_round_trip():
    data = D.load_forecasting(None, seq_len=48, pred_len=24)
    raw = torch.tensor(D.generate_seasonal()[data.channels].to_numpy().T)
    start, end = data.borders["test"]
    torch.testing.assert_close(data.scaler.inverse_transform(data.test).double(), raw[:, start:end],
                               rtol=1e-5, atol=1e-4)
    windows = data.windows("test", stride=7)
    back = data.scaler.inverse_transform(windows)
    assert back.shape == windows.shape and back.dtype == torch.float32
    torch.testing.assert_close(data.scaler.transform(back), windows, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(back[3].double(), raw[:, start + 21:start + 21 + 72], rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="7"):
        data.scaler.transform(torch.zeros(2, 3, 5))


@pytest.mark.parametrize("stride", [1, 5])
def test_window_shapes_and_stride(stride):
    data = D.load_forecasting(None, seq_len=32, pred_len=16, stride=stride)
    assert data.window_channels == 7 and data.stride == stride
    for split in ("train", "val", "test"):
        series = getattr(data, split)
        windows = data.windows(split)
        count = (series.shape[1] - 48) // stride + 1
        assert windows.shape == (count, 7, 48)
        for b in (0, count // 2, count - 1):
            torch.testing.assert_close(windows[b], series[:, b * stride:b * stride + 48], rtol=0, atol=0)
    assert data.windows("train", stride=10).shape[0] == (data.train.shape[1] - 48) // 10 + 1
    with pytest.raises(ValueError, match="split"):
        data.windows("holdout")
    with pytest.raises(ValueError, match="stride"):
        data.windows("train", stride=0)


def test_condtsf_protocol():
    data = D.load_forecasting(None, protocol="condtsf", seq_len=24, pred_len=24, stride=4)
    raw = torch.tensor(D.generate_seasonal()[data.channels].to_numpy().T)
    n, length = raw.shape
    cut = int(length * 0.7)
    assert data.borders == {"train": (0, cut), "test": (cut, length)} and data.val is None
    torch.testing.assert_close(data.scaler.mean, raw.mean(1))
    torch.testing.assert_close(data.scaler.std, raw.std(1))  # unbiased, as torch.std in CondTSF
    whole = torch.cat([data.train, data.test], dim=1)
    torch.testing.assert_close(whole, ((raw - raw.mean(1, keepdim=True)) / raw.std(1, keepdim=True)).float())
    assert data.window_channels == 1
    windows = data.windows("train")
    count = (cut - 48) // 4 + 1
    assert windows.shape == (count * n, 1, 48)
    by_window = windows.view(count, n, 48)
    torch.testing.assert_close(by_window[5, 2], data.train[2, 20:68], rtol=0, atol=0)
    assert data.windows("test").shape[0] == ((length - cut - 48) // 4 + 1) * n
    with pytest.raises(ValueError, match="'val' does not exist"):
        data.windows("val")
    assert data.scaler.inverse_transform(by_window).shape == (count, n, 48)


def test_features_s_ms_and_column_order(tmp_path):
    rng = np.random.default_rng(1)
    frame = hourly({"OT": rng.normal(size=500), "a": rng.normal(size=500), "b": rng.normal(size=500)}, 500)
    path = write_frame(tmp_path, frame)
    m = D.load_forecasting(path, seq_len=24, pred_len=12)
    assert m.channels == ["a", "b", "OT"]  # Dataset_Custom: target last
    s = D.load_forecasting(path, features="S", seq_len=24, pred_len=12)
    assert s.channels == ["OT"] and s.train.shape == (1, 350) and s.scaler.mean.shape == (1,)
    torch.testing.assert_close(s.train[0], m.train[2])
    ms = D.load_forecasting(path, features="MS", target="a", seq_len=24, pred_len=12)
    assert ms.channels == ["OT", "b", "a"] and ms.windows("train").shape[1] == 3
    with pytest.raises(ValueError, match="target column 'zz' not found"):
        D.load_forecasting(path, features="S", target="zz")
    assert D.load_forecasting(path, target="zz", seq_len=24, pred_len=12).channels == ["OT", "a", "b"]


@pytest.mark.skipif(SHARED is None or not (SHARED / "ETTh1.csv").is_file(), reason="shared ETTh1.csv not found")
def test_ett_keeps_file_order_under_m():
    m = D.load_forecasting("ETTh1", target="HUFL", seq_len=96, pred_len=96)
    assert m.channels == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    ms = D.load_forecasting("ETTh1", features="MS", target="HUFL", seq_len=96, pred_len=96)
    assert ms.channels[-1] == "HUFL" and len(ms.channels) == 7


def test_user_file_named_like_a_registry_file_uses_its_split(tmp_path):
    path = write_frame(tmp_path, hourly({"OT": np.arange(1000.0)}, 1000), name="ETTh1.csv")
    with pytest.raises(ValueError, match="ett_hour split needs at least 14400 rows"):
        D.load_forecasting(path)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"protocol": "tslib"}, ValueError, "protocol"),
    ({"features": "X"}, ValueError, "features"),
    ({"seq_len": 0}, ValueError, "seq_len"),
    ({"pred_len": 2.5}, TypeError, "pred_len"),
    ({"stride": True}, TypeError, "stride"),
    ({"target": 3}, TypeError, "target"),
    ({"seq_len": 3000}, ValueError, "seq_len=3000 exceeds"),
    ({"pred_len": 500}, ValueError, "val split has 496 rows"),
    ({"features": "S", "target": "zz"}, ValueError, "target='zz' is not a numeric column of synthetic"),
    ({"data": 42}, TypeError, "data"),
    ({"data": "no/such/file.csv"}, FileNotFoundError, "neither a file nor a dataset name"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        D.load_forecasting(**{"data": None, **kwargs})


def test_split_helpers():
    assert D.split_sizes(7588, "custom") == (5311, 760, 1517)
    assert D.split_sizes(17420, "ett_hour") == (8640, 2880, 2880)
    assert D.split_sizes(69680, "ett_minute") == (34560, 11520, 11520)
    assert D.condtsf_borders(17420) == {"train": (0, 12194), "test": (12194, 17420)}
    with pytest.raises(ValueError, match="rule"):
        D.split_sizes(100, "monthly")


def test_constant_channel_warns():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        scaler = D.Scaler.fit(torch.ones(2, 10))
    assert "constant" in str(record[0].message) and scaler.std.tolist() == [1.0, 1.0]
