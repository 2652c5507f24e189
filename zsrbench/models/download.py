"""Downloading one file over HTTP(S), resumably, and checking its sha256 before anything uses it.

:func:`download_url` writes into ``<dest>.part``: an interrupted download resumes from the bytes already there
(an HTTP ``Range`` request; a server that ignores it sends the whole file, which then replaces the part), shows a
progress bar on stderr, and moves the part to ``dest`` only after its size and sha256 are the expected ones. A
file whose sha256 differs is kept aside as ``<dest>.sha256-mismatch`` (never deleted) and refused. The network is
reached through an *opener* (``opener(url, headers) -> response``), so that tests can hand in a fake one.

Nothing here knows the model zoo: :mod:`zsrbench.models.catalogue` decides what to download and where.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from zsrbench.errors import ZsrError

CHUNK = 1 << 20
PART_SUFFIX = ".part"
MISMATCH_SUFFIX = ".sha256-mismatch"
TIMEOUT_S = 60
OFFLINE_VARS = ("ZSRBENCH_OFFLINE", "HF_HUB_OFFLINE")


class Response(Protocol):  # what an opener returns (urllib's response has these)
    status: int
    headers: Mapping[str, str]

    def read(self, n: int = -1) -> bytes: ...

    def close(self) -> None: ...


Opener = Callable[[str, Mapping[str, str]], Response]


def offline() -> bool:
    """``ZSRBENCH_OFFLINE`` (or huggingface's ``HF_HUB_OFFLINE``) is set to a true value."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_VARS)


def sha256_of(path: str | Path, chunk: int = CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class HTTPStatusError(OSError):
    """The server answered with an HTTP error status."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(f"HTTP {status} for {url}")
        self.status = status


def urllib_opener(url: str, headers: Mapping[str, str]) -> Response:
    """The real network: urllib, following redirects; an HTTP error status other than 416 raises."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"User-Agent": "zsrbench", **dict(headers)})
    try:
        return urllib.request.urlopen(req, timeout=TIMEOUT_S)  # noqa: S310 - the URL is a catalogue entry's
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # range past the end: the part file is already whole
            return exc  # type: ignore[return-value]  (an HTTPError is a response too)
        raise HTTPStatusError(url, exc.code) from exc


def _status(resp: Any) -> int:
    code = getattr(resp, "status", None)
    if code is None and hasattr(resp, "getcode"):
        code = resp.getcode()
    return int(code or 200)


def _header(resp: Any, name: str) -> str | None:
    headers = getattr(resp, "headers", None) or {}
    try:
        value = headers.get(name)
    except AttributeError:  # pragma: no cover - a plain sequence of pairs
        value = dict(headers).get(name)
    if value is None:
        lower = {str(k).lower(): v for k, v in dict(headers).items()} if hasattr(headers, "items") else {}
        value = lower.get(name.lower())
    return None if value is None else str(value)


def _total_from(resp: Any, offset: int) -> int | None:
    """The whole file's size, from Content-Range (``bytes a-b/total``) or Content-Length (+ the resumed offset)."""
    cr = _header(resp, "Content-Range")
    if cr:
        m = re.search(r"/(\d+)\s*$", cr)
        if m:
            return int(m.group(1))
    cl = _header(resp, "Content-Length")
    if cl and cl.strip().isdigit():
        return int(cl) + (offset if _status(resp) == 206 else 0)
    return None


def _progress(label: str, total: int | None, done: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    bar.start()
    bar.add_task(label, total=total, completed=done)
    return bar


def download_url(url: str, dest: str | Path, *, expected_sha256: str | None = None,
                 expected_size: int | None = None, opener: Opener | None = None, progress: bool | None = None,
                 label: str | None = None) -> tuple[Path, str]:
    """Download ``url`` to ``dest`` (resuming ``dest.part``); return ``(dest, sha256)``.

    ``expected_sha256`` / ``expected_size``: checked before the file is moved into place; a mismatch keeps the
    bytes at ``dest.sha256-mismatch`` and raises :class:`ZsrError`. Network failures are raised as they come
    (``OSError`` and subclasses): the caller words them for the user; the part file stays for the next try.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + PART_SUFFIX)
    opener = opener or urllib_opener
    progress = sys.stderr.isatty() if progress is None else progress
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    resp = opener(url, headers)
    try:
        status = _status(resp)
        if status == 416 and offset:  # nothing left to fetch: the part holds the whole file
            total = offset
        elif status in (200, 206):
            if status == 200 and offset:  # the server ignored the range: start again
                offset = 0
            total = _total_from(resp, offset)
            bar = _progress(label or dest.name, total, offset, progress)
            try:
                with open(part, "ab" if offset else "wb") as out:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        out.write(block)
                        if bar is not None:
                            bar.advance(bar.task_ids[0], len(block))
            finally:
                if bar is not None:
                    bar.stop()
        else:
            raise HTTPStatusError(url, status)
    finally:
        close = getattr(resp, "close", None)
        if callable(close):
            close()
    size = part.stat().st_size
    if total is not None and size < total:
        raise ConnectionError(f"the transfer stopped at {size} of {total} bytes; {part} keeps them and the next "
                              "try resumes from there")
    digest = sha256_of(part)
    wrong_size = expected_size is not None and size != expected_size
    if (expected_sha256 and digest != expected_sha256) or wrong_size:
        kept = dest.with_name(dest.name + MISMATCH_SUFFIX)
        os.replace(part, kept)
        what = (f"sha256 {digest}, not the expected {expected_sha256}" if expected_sha256 and digest != expected_sha256
                else f"{size} bytes, not the {expected_size} expected")
        raise ZsrError(
            f"The file downloaded from {url} has {what}: it was not used. Its bytes are kept at {kept} (delete it "
            "when done looking). Retry the download (`zsrbench zoo fetch NAME`); if it differs again, the publisher "
            f"has changed the file: check it, then place it by hand at {dest} after updating the pin."
        )
    os.replace(part, dest)
    return dest, digest
