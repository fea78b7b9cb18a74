"""ddtime.driver.data.read_csv on messy files written into tmp_path, and on the real quirky files."""
import warnings

import numpy as np
import pandas as pd
import pytest

import ddtime.driver.data as D

SHARED = D.shared_data_dir()


def write(tmp_path, text, name="f.csv", newline="\n"):
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def read_quiet(path, **kwargs):
    """read_csv that fails on any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return D.read_csv(path, **kwargs)


@pytest.mark.parametrize("dates, expected", [
    (["2016-07-01 00:00:00", "2016-07-01 01:00:00", "2016-07-01 02:00:00"],
     ["2016-07-01 00:00", "2016-07-01 01:00", "2016-07-01 02:00"]),
    (["1990/1/1 0:00", "1990/1/2 0:00", "1990/12/31 13:05"], ["1990-01-01", "1990-01-02", "1990-12-31 13:05"]),
    (["2002-01-01", "2002-01-08", "2002-01-15"], ["2002-01-01", "2002-01-08", "2002-01-15"]),
    (["01.01.2009 00:10:00", "01.01.2009 00:20:00", "02.01.2009 00:00:00"],
     ["2009-01-01 00:10", "2009-01-01 00:20", "2009-01-02"]),
])
def test_date_formats(tmp_path, dates, expected):
    path = write(tmp_path, "date,a\n" + "".join(f"{d},{i}\n" for i, d in enumerate(dates)))
    frame = read_quiet(path)
    assert list(frame.columns) == ["date", "a"]
    assert list(frame["date"]) == [pd.Timestamp(e) for e in expected]
    assert frame["a"].dtype == np.float64


def test_crlf_no_final_newline_and_non_ascii_header(tmp_path):
    text = "date,p (mbar),SWDR (W/m\ufffd),\u00b5g,OT\n2020-01-01 00:10:00,1,2,3,4\n2020-01-01 00:20:00,5,6,7,8"
    frame = read_quiet(write(tmp_path, text, newline="\r\n"))
    assert list(frame.columns) == ["date", "p (mbar)", "SWDR (W/m\ufffd)", "\u00b5g", "OT"]
    assert frame["OT"].tolist() == [4.0, 8.0]


def test_bom_whitespace_and_date_not_first(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes("\ufeff a , Date ,OT\n1, 2020-01-01 ,2\n3,2020-01-02, 4\n".encode("utf-8"))
    frame = read_quiet(path)
    assert list(frame.columns) == ["date", "a", "OT"] and frame["OT"].tolist() == [2.0, 4.0]


def test_latin1_file_is_read_with_a_warning(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes("date,T (\u00b0C)\n2020-01-01,1\n2020-01-02,2\n".encode("latin-1"))
    with pytest.warns(D.DataQualityWarning, match="Latin-1"):
        frame = D.read_csv(path)
    assert frame.columns[1] == "T (\u00b0C)"


def test_sentinel_is_missing_and_interpolated(tmp_path):
    path = write(tmp_path, "date,wv\n2020-01-01,1\n2020-01-02,-9999\n2020-01-03,3\n2020-01-04,-9999.0\n")
    with pytest.warns(D.DataQualityWarning) as record:
        frame = D.read_csv(path)
    assert any("2 sentinel value(s) [-9999.0] treated as missing, first at data row 2 (line 3)" in str(w.message)
               for w in record)
    assert frame["wv"].tolist() == [1.0, 2.0, 3.0, 3.0]
    assert read_quiet(path, sentinels=())["wv"].tolist() == [1.0, -9999.0, 3.0, -9999.0]


def test_nan_cells_are_interpolated_with_a_warning(tmp_path):
    path = write(tmp_path, "date,a,b\n2020-01-01,,1\n2020-01-02,2,NaN\n2020-01-03,NA,3\n2020-01-04,6,inf\n")
    with pytest.warns(D.DataQualityWarning) as record:
        frame = D.read_csv(path)
    messages = " | ".join(str(w.message) for w in record)
    assert "'a': 2 missing" in messages and "'b': 1 infinite" in messages and "'b': 2 missing" in messages
    assert frame["a"].tolist() == [2.0, 2.0, 4.0, 6.0]
    assert frame["b"].tolist() == [1.0, 2.0, 3.0, 3.0]


def test_all_nan_column_is_rejected(tmp_path):
    path = write(tmp_path, "date,a,b\n2020-01-01,1,\n2020-01-02,2,nan\n")
    with pytest.raises(ValueError, match=r"f\.csv.*column 'b' has no value"):
        D.read_csv(path)


def test_trailing_comma_column_is_dropped(tmp_path):
    path = write(tmp_path, "date,a,\n2020-01-01,1,\n2020-01-02,2,\n")
    with pytest.warns(D.DataQualityWarning, match="no header and no values"):
        assert list(D.read_csv(path).columns) == ["date", "a"]


def test_duplicated_timestamps_keep_first(tmp_path):
    path = write(tmp_path, "date,a\n2020-01-01,1\n2020-01-02,2\n2020-01-02,99\n2020-01-03,3\n")
    with pytest.warns(D.DataQualityWarning, match=r"1 duplicated timestamp.*data row 3 \(line 4\)"):
        frame = D.read_csv(path)
    assert frame["a"].tolist() == [1.0, 2.0, 3.0] and len(frame["date"].unique()) == 3


def test_unsorted_dates_are_sorted(tmp_path):
    path = write(tmp_path, "date,a\n2020-01-03,3\n2020-01-01,1\n2020-01-02,2\n")
    with pytest.warns(D.DataQualityWarning, match="not in increasing order"):
        frame = D.read_csv(path)
    assert frame["a"].tolist() == [1.0, 2.0, 3.0] and frame["date"].is_monotonic_increasing


def test_non_numeric_column_dropped_unless_target(tmp_path):
    path = write(tmp_path, "date,site,a,OT\n2020-01-01,x,1,5\n2020-01-02,y,2,6\n")
    with pytest.warns(D.DataQualityWarning, match=r"'site' is not numeric.*dropped"):
        assert list(D.read_csv(path, target="OT").columns) == ["date", "a", "OT"]
    with pytest.raises(ValueError, match=r"'site' is not numeric.*target"):
        D.read_csv(path, target="site")


def test_isolated_non_numeric_cell_is_missing(tmp_path):
    path = write(tmp_path, "date,a\n2020-01-01,1\n2020-01-02,oops\n2020-01-03,3\n")
    with pytest.warns(D.DataQualityWarning) as record:
        assert D.read_csv(path)["a"].tolist() == [1.0, 2.0, 3.0]
    assert "1 non-numeric cell(s) treated as missing, first at data row 2" in str(record[0].message)


@pytest.mark.parametrize("text, match", [
    ("", "empty file"),
    ("\n\n", "empty file"),
    ("date,a,OT\n", "no data rows"),
    ("a,OT\n1,2\n", r"no 'date' column; columns are \['a', 'OT'\]"),
    ("date,a\n2020-01-01,1\n", "target column 'OT' not found"),
    ("date,a,OT\n2020-01-01,1,2\n2020-01-02,3\n", r"line 3 \(data row 2\) has 2 fields.*missing column\(s\) \['OT'\]"),
    ("date,a,OT\n2020-01-01,1,2,7\n", r"line 2 \(data row 1\) has 4 fields.*1 extra field.*'OT'"),
    ("date,a,OT\n2020-01-01,1,2\nyesterday,3,4\n", r"unparsable value 'yesterday' at data row 2 \(line 3\)"),
    ("date,a,OT\n2020-01-01,1,2\n,3,4\n", r"unparsable value '' at data row 2 \(line 3\)"),
    ("date,OT\n2020-01-01,x\n2020-01-02,y\n", r"'OT' is not numeric.*target"),
    ("date,site\n2020-01-01,x\n", "no numeric column"),
])
def test_bad_files_raise_clear_errors(tmp_path, text, match):
    path = write(tmp_path, text, name="bad.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", D.DataQualityWarning)
        with pytest.raises(ValueError, match=match) as err:
            D.read_csv(path, target="OT" if "site" not in text else None, name="mine")
    assert "mine" in str(err.value) and "bad.csv" in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        D.read_csv(tmp_path / "nope.csv")


def test_mixed_date_formats_parse_with_a_warning(tmp_path):
    path = write(tmp_path, "date,a\n2020-01-01 00:00,1\n2020/01/02,2\nJan 3 2020,3\n")
    with pytest.warns(D.DataQualityWarning, match="element by element"):
        frame = D.read_csv(path)
    assert list(frame["date"].dt.day) == [1, 2, 3]


@pytest.mark.skipif(SHARED is None, reason="shared data folder not found (set DDTIME_SHARED_DATA)")
@pytest.mark.parametrize("name, rows, first, last", [
    ("exchange_rate", 7588, "1990-01-01", "2010-10-10"),
    ("national_illness", 966, "2002-01-01", "2020-06-30"),
    ("ETTh1", 17420, "2016-07-01 00:00", "2018-06-26 19:00"),
])
def test_real_files_read_cleanly(name, rows, first, last):
    path = SHARED / f"{name}.csv"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    frame = read_quiet(path, target="OT")
    assert len(frame) == rows and frame.columns[0] == "date" and frame.columns[-1] == "OT"
    assert frame["date"].iloc[0] == pd.Timestamp(first) and frame["date"].iloc[-1] == pd.Timestamp(last)
    assert frame.drop(columns="date").notna().all().all()
