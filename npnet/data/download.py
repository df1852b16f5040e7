"""Checksums and verified, atomic downloads.

A download is streamed into a hidden temporary file in the destination folder, checked, and only then
renamed onto its final name with `os.replace` (atomic on one file system). Whatever goes wrong, the
temporary file is removed, so the cache never holds a partial or corrupt file under a real name.
"""
import gzip
import hashlib
import os
import secrets
import urllib.error
import urllib.request
import zlib
from pathlib import Path

CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A file's md5 differs from the expected one (or a .gz does not decompress)."""


def md5_file(path, gunzip=False):
    """Hex md5 and byte count of a file's content; of its *decompressed* content if `gunzip`."""
    digest, size = hashlib.md5(), 0
    opener = gzip.open if gunzip else open
    try:
        with opener(path, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        if not gunzip:
            raise
        raise ChecksumError(f"{path}: not a valid gzip file ({err})") from err
    return digest.hexdigest(), size


def check_md5(path, expected, gunzip=False, label=None):
    """Raise ChecksumError naming `label` (default the path) unless the md5 is `expected`."""
    received, size = md5_file(path, gunzip)
    if expected is not None and received != expected.lower():
        what = "decompressed content" if gunzip else "content"
        raise ChecksumError(f"{label or path}: md5 of {what} is {received} ({size} bytes), "
                            f"expected {expected}")


def _progress(total, name, enabled):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc=name, leave=False)


def _stream(url, out, progress, timeout):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = response.headers.get("Content-Length")
        bar = _progress(int(total) if total else None, Path(url).name, progress)
        try:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()


def download(url, dest, md5, gunzip_md5=False, progress=True, timeout=60):
    """Download `url` to `dest` atomically, keeping it only if its md5 is `md5`.

    `gunzip_md5=True` checks the md5 of the decompressed bytes (for re-compressed .gz mirrors).
    Raises `ChecksumError` on a mismatch and `OSError` (e.g. `urllib.error.URLError`) when the
    server cannot be reached; in both cases nothing is left in the destination folder.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # not tempfile.mkstemp: its files are private (0600); "xb" gives the usual umask-based mode
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.part")
    try:
        with open(tmp, "xb") as out:
            _stream(url, out, progress, timeout)
        check_md5(tmp, md5, gunzip_md5, label=f"download of {url}")
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def describe_failure(err):
    """A one-line reason for a failed download."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason} for {err.url}"
    if isinstance(err, urllib.error.URLError):
        return f"cannot reach the server ({err.reason})"
    return f"{type(err).__name__}: {err}"
