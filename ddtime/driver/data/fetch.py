"""Finding, downloading and verifying the benchmark files.

A registry name resolves in this order: the shared folder (:func:`shared_data_dir`), the cache
(:func:`data_dir`), then a download into the cache from the entry's URLs (urllib, checksum
verified before an atomic ``os.replace``). Offline, the error names the file, where to put it
and where it can be downloaded.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile
import urllib.request
import warnings

from tqdm.auto import tqdm

from ddtime.driver.data.registry import REGISTRY, DatasetInfo, data_dir, lookup, shared_data_dir

_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A file's sha256 or git blob id differs from the registry's."""


def file_digests(path: str | os.PathLike) -> dict[str, str]:
    """``{"sha256": ..., "git_blob": ...}`` of a file; git_blob is ``git hash-object`` (SHA-1 of
    ``b"blob <size>\\0" + content``)."""
    path = pathlib.Path(path)
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha256.update(chunk)
            blob.update(chunk)
    return {"sha256": sha256.hexdigest(), "git_blob": blob.hexdigest()}


def verify_file(path: str | os.PathLike, *, sha256: str | None = None, git_blob: str | None = None) -> str | None:
    """Check ``path`` against the sha256 if given, else the git blob id if given.

    Returns the name of the checksum that was verified, or None when neither is known.
    Raises :class:`ChecksumError` (naming the file, the expected and the actual value) on mismatch.
    """
    kind, expected = ("sha256", sha256) if sha256 else ("git_blob", git_blob)
    if not expected:
        return None
    actual = file_digests(path)[kind]
    if actual != expected.lower():
        raise ChecksumError(f"{path}: {kind} is {actual}, expected {expected}")
    return kind


def _open_url(url: str):
    """Binary response for ``url`` (http(s) or file://); tests monkeypatch this."""
    return urllib.request.urlopen(url, timeout=60)


def _fetch_to(url: str, dest: pathlib.Path, info: DatasetInfo, quiet: bool) -> None:
    """Download ``url`` to ``dest``, verify it, and move it into place atomically."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{info.filename}.", suffix=".tmp", dir=dest.parent)
    tmp = pathlib.Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, _open_url(url) as response:
            length = getattr(response, "headers", {}).get("Content-Length")
            total = int(length) if length else None
            with tqdm(total=total, unit="B", unit_scale=True, desc=info.filename, disable=quiet) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        verify_file(tmp, sha256=info.sha256, git_blob=info.git_blob)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def download(info: DatasetInfo, *, dest_dir: str | os.PathLike | None = None, quiet: bool = False) -> pathlib.Path:
    """Download ``info.filename`` into ``dest_dir`` (default :func:`data_dir`), trying each URL in turn.

    Warns when the registry knows no checksum. Raises :class:`ChecksumError` when every copy that
    could be fetched failed verification, ``OSError`` when none could be fetched.
    """
    dest_dir = pathlib.Path(dest_dir) if dest_dir is not None else data_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / info.filename
    if not (info.sha256 or info.git_blob):
        warnings.warn(f"dataset {info.name!r}: no checksum is known for {info.filename}; "
                      "the downloaded file is not verified", stacklevel=2)
    failures: list[str] = []
    bad_checksum = None
    for url in info.urls:
        try:
            _fetch_to(url, dest, info, quiet)
            return dest
        except ChecksumError as err:
            bad_checksum = err
            failures.append(f"{url}: {err}")
        except (OSError, ValueError) as err:  # URLError is an OSError; ValueError: unknown URL type
            failures.append(f"{url}: {err}")
    detail = "; ".join(failures) or "no URL is known"
    if bad_checksum is not None:
        raise ChecksumError(f"dataset {info.name!r}: no copy of {info.filename} passed verification ({detail})")
    raise OSError(f"dataset {info.name!r}: could not download {info.filename} ({detail})")


def _missing_message(info: DatasetInfo, searched: list[pathlib.Path], reason: str) -> str:
    where = ", ".join(str(p) for p in searched)
    urls = "\n  ".join(info.urls) or "(no public copy known)"
    return (f"dataset {info.name!r}: file {info.filename} is not in {where} and {reason}. "
            f"Put {info.filename} into {data_dir()} (the cache; set DDTIME_DATA_DIR to move it) or into "
            f"a folder named by DDTIME_SHARED_DATA. It can be downloaded from:\n  {urls}")


def resolve_dataset(name: str, *, allow_download: bool = True, quiet: bool = False) -> pathlib.Path:
    """Path of the registry dataset ``name``: shared folder, then cache, then a verified download.

    Raises ValueError for an unknown name, FileNotFoundError (saying which file, where to put it
    and where to download it) when the file is absent and cannot be downloaded, and
    :class:`ChecksumError` (same message) when every downloaded copy failed verification.
    """
    info = lookup(name)
    if info is None:
        raise ValueError(f"name must be a registry name ({', '.join(REGISTRY)}), got {name!r}")
    searched = [d / info.filename for d in (shared_data_dir(), data_dir()) if d is not None]
    for path in searched:
        if path.is_file():
            return path
    if not allow_download:
        raise FileNotFoundError(_missing_message(info, searched, "downloading was not allowed"))
    try:
        return download(info, quiet=quiet)
    except ChecksumError as err:
        raise ChecksumError(_missing_message(info, searched, f"no download passed verification ({err})")) from err
    except OSError as err:
        raise FileNotFoundError(_missing_message(info, searched, f"the download failed ({err})")) from err
