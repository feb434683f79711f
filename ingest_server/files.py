"""Files written whole: under a temporary name beside the target, with their mode from
the start, synced, then renamed (or linked) into place. Nobody reads one half-written,
and a secret is never readable by others, not even for a moment."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets
from pathlib import Path
from typing import Any


def write_temp(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """`data` in a new file next to `path` (same file system); returns its name."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` in one rename."""
    tmp = write_temp(path, data, mode)
    try:
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def json_bytes(doc: Any) -> bytes:
    """`doc` as the JSON files of a bundle and a trust file hold it: UTF-8, indented, a
    time in UTC ISO 8601, a day ISO, bytes base64."""
    return (json.dumps(doc, ensure_ascii=False, indent=1, default=_jsonable) + "\n").encode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"{type(value).__name__} is not JSON")
