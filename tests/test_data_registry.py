"""ddtime.driver.data registry, folders, checksums and downloads (no internet: file:// and a patched fetch)."""
import hashlib
import io
import urllib.error
from pathlib import Path

import pytest

import ddtime.driver.data as D
from ddtime.driver.data import fetch as dl

SHARED = D.shared_data_dir()
needs_shared = pytest.mark.skipif(SHARED is None, reason="shared data folder not found (set DDTIME_SHARED_DATA)")
CONTENT = b"date,a,OT\n2020-01-01 00:00:00,1,2\n2020-01-01 01:00:00,3,4\n"


def toy_info(tmp_path, **overrides):
    source = tmp_path / "source" / "toy.csv"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(CONTENT)
    fields = dict(name="toy", filename="toy.csv", split="custom", freq="h", urls=(source.as_uri(),),
                  sha256=hashlib.sha256(CONTENT).hexdigest())
    fields.update(overrides)
    return D.DatasetInfo(**fields)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    shared, cache = tmp_path / "shared", tmp_path / "cache"
    shared.mkdir()
    monkeypatch.setenv("DDTIME_SHARED_DATA", str(shared))
    monkeypatch.setenv("DDTIME_DATA_DIR", str(cache))
    return shared, cache


def test_registry_entries_are_complete():
    expected = {"ETTh1", "ETTh2", "ETTm1", "ETTm2", "weather", "electricity", "traffic", "exchange_rate",
                "national_illness"}
    assert expected <= set(D.REGISTRY)
    for name, info in D.REGISTRY.items():
        assert info.name == name and info.filename.endswith(".csv") and info.target == "OT"
        assert info.split in ("ett_hour", "ett_minute", "custom")
        assert info.sha256 or info.git_blob
        assert info.urls and all(u.startswith("https://raw.githubusercontent.com/") for u in info.urls)
        # pinned to a full commit id
        assert all(len(u.split("/")[5]) == 40 for u in info.urls)
    assert D.REGISTRY["ETTm2"].split == "ett_minute" and D.REGISTRY["weather"].freq == "10min"
    assert D.lookup("ecl") is D.REGISTRY["electricity"] and D.lookup("etth1") is D.REGISTRY["ETTh1"]
    assert D.lookup("nope") is None


def test_folders_follow_the_environment(dirs, monkeypatch, tmp_path):
    shared, cache = dirs
    assert D.shared_data_dir() == shared and D.data_dir() == cache
    monkeypatch.setenv("DDTIME_SHARED_DATA", str(tmp_path / "missing"))
    assert D.shared_data_dir() is None
    monkeypatch.delenv("DDTIME_DATA_DIR")
    assert D.data_dir() == Path.home() / ".cache" / "ddtime"


@needs_shared
@pytest.mark.parametrize("filename", ["ETTh1.csv", "ETTh2.csv", "ETTm1.csv", "exchange_rate.csv",
                                      "national_illness.csv"])
def test_shared_files_match_the_registry_checksums(filename):
    path = SHARED / filename
    if not path.is_file():
        pytest.skip(f"{path} not present")
    info = D.lookup_filename(filename)
    digests = D.file_digests(path)
    assert digests["sha256"] == info.sha256
    assert digests["git_blob"] == info.git_blob
    assert D.verify_file(path, sha256=info.sha256) == "sha256"
    assert D.verify_file(path, git_blob=info.git_blob) == "git_blob"


def test_git_blob_matches_git_hash_object(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"hello\n")
    # `printf 'hello\n' | git hash-object --stdin`
    assert D.file_digests(path)["git_blob"] == "ce013625030ba8dba906f756967f9e9ca394464a"
    with pytest.raises(D.ChecksumError, match="x.csv"):
        D.verify_file(path, git_blob="0" * 40)
    assert D.verify_file(path) is None


def test_download_from_file_url_verifies_and_writes_atomically(tmp_path):
    info = toy_info(tmp_path)
    dest = D.download(info, dest_dir=tmp_path / "cache", quiet=True)
    assert dest == tmp_path / "cache" / "toy.csv" and dest.read_bytes() == CONTENT
    assert sorted(p.name for p in dest.parent.iterdir()) == ["toy.csv"]


def test_download_with_git_blob_and_fallback_url(tmp_path, monkeypatch):
    blob = hashlib.sha1(b"blob %d\0" % len(CONTENT) + CONTENT).hexdigest()
    info = toy_info(tmp_path, sha256=None, git_blob=blob)
    info = D.DatasetInfo(**{**info.__dict__, "urls": ("https://example.invalid/toy.csv",) + info.urls})
    real_open = dl._open_url

    def fake_open(url):
        if url.startswith("https://"):
            raise urllib.error.URLError("offline")
        return real_open(url)

    monkeypatch.setattr(dl, "_open_url", fake_open)
    assert D.download(info, dest_dir=tmp_path / "cache", quiet=True).read_bytes() == CONTENT


def test_download_rejects_a_bad_checksum(tmp_path):
    info = toy_info(tmp_path, sha256="0" * 64)
    with pytest.raises(D.ChecksumError, match="toy.csv"):
        D.download(info, dest_dir=tmp_path / "cache", quiet=True)
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_without_checksum_warns(tmp_path, monkeypatch):
    info = toy_info(tmp_path, sha256=None)
    monkeypatch.setattr(dl, "_open_url", lambda url: io.BytesIO(CONTENT))
    with pytest.warns(UserWarning, match="no checksum"):
        D.download(info, dest_dir=tmp_path / "cache", quiet=True)


def test_resolution_order_shared_then_cache_then_download(dirs, tmp_path, monkeypatch):
    shared, cache = dirs
    monkeypatch.setitem(D.REGISTRY, "toy", toy_info(tmp_path))
    calls = []
    real_open = dl._open_url
    monkeypatch.setattr(dl, "_open_url", lambda url: calls.append(url) or real_open(url))
    assert D.resolve_dataset("toy", quiet=True) == cache / "toy.csv" and len(calls) == 1
    assert D.resolve_dataset("toy", quiet=True) == cache / "toy.csv" and len(calls) == 1
    (shared / "toy.csv").write_bytes(CONTENT)
    assert D.resolve_dataset("toy") == shared / "toy.csv"


def test_offline_message_names_file_folder_and_url(dirs, tmp_path, monkeypatch):
    _, cache = dirs
    monkeypatch.setitem(D.REGISTRY, "toy", toy_info(tmp_path, urls=("https://example.invalid/x/toy.csv",)))

    def offline(url):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(dl, "_open_url", offline)
    with pytest.raises(FileNotFoundError) as err:
        D.resolve_dataset("toy", quiet=True)
    message = str(err.value)
    assert "toy.csv" in message and str(cache) in message and "https://example.invalid/x/toy.csv" in message
    with pytest.raises(FileNotFoundError, match="not allowed"):
        D.resolve_dataset("toy", allow_download=False)
    with pytest.raises(ValueError, match="registry name"):
        D.resolve_dataset("no_such_dataset")
