"""The bundle's zip, opened: its manifest read and its format checked (`_open`), its
members read only when asked (`Members`), and a Parquet member read where it lies in the
zip, whole or a row group at a time (docs/evidence-verify.md, "Speed").
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from ingest_server.evidence.offline.verdict import BundleInputError

BUNDLE_FORMAT, BUNDLE_VERSION = "factory-evidence.bundle", 1


class Members(Mapping[str, bytes]):
    """The bundle's members, read from the zip only when asked (docs/evidence-verify.md,
    "Speed"): `files[name]` is a member's bytes (the JSON members, kept once read), and
    `parquet(name)` opens a Parquet member where it lies in the zip (stored, as
    `bundle.write` writes them), so that its row groups are read one at a time."""

    _KEEP = 64 << 20  # members up to this size are kept once read (JSON, small tables)

    def __init__(self, path: Path, infos: Mapping[str, zipfile.ZipInfo]) -> None:
        self.path = path
        self._infos = dict(infos)
        self._kept: dict[str, bytes] = {}

    def __getitem__(self, name: str) -> bytes:
        if name in self._kept:
            return self._kept[name]
        info = self._infos[name]
        with zipfile.ZipFile(self.path) as z:
            data = z.read(info)
        if len(data) <= self._KEEP:
            self._kept[name] = data
        return data

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def size(self, name: str) -> int:
        return int(self._infos[name].file_size)

    def chunks(self, name: str, size: int = 1 << 20) -> Iterator[bytes]:
        """The member's bytes, `size` at a time (the manifest's SHA-256s, streamed)."""
        with zipfile.ZipFile(self.path) as z, z.open(self._infos[name]) as f:
            while chunk := f.read(size):
                yield chunk

    def parquet(self, name: str) -> pq.ParquetFile:
        info = self._infos[name]
        if info.compress_type != zipfile.ZIP_STORED:  # a deflated member: read it whole
            return pq.ParquetFile(pa.BufferReader(self[name]))
        raw = self.path.open("rb")
        raw.seek(info.header_offset)
        local = raw.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raw.close()
            raise ValueError(f"{name}: its local zip header is damaged")
        start = (
            info.header_offset
            + 30
            + int.from_bytes(local[26:28], "little")
            + int.from_bytes(local[28:30], "little")
        )
        raw.close()
        # the member's bytes mapped from the zip as one of pyarrow's own buffers (pages read
        # as the row groups are): never a Python file object, with which arrow may still
        # be tidying up on a worker thread when the interpreter exits, aborting it
        # (apache/arrow#33975; about one run in twenty here)
        mapped = pa.memory_map(str(self.path), "r")
        if start + info.file_size > mapped.size():
            raise ValueError(f"{name}: the zip ends inside the member")
        return pq.ParquetFile(pa.BufferReader(mapped.read_at(info.file_size, start)))


def _open(path: Path) -> tuple[dict[str, Any], Members, list[str]]:
    """The manifest, the members (read lazily), and the zip's names in order (duplicates
    kept)."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            names = [i.filename for i in infos]
            first: dict[str, zipfile.ZipInfo] = {}
            for i in infos:
                first.setdefault(i.filename, i)
            files = Members(path, first)
            manifest_bytes = files["manifest.json"] if "manifest.json" in first else None
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleInputError(f"{path}: not a readable zip file ({exc}); give the file "
                               "`ingest-server report --bundle` wrote") from None  # fmt: skip
    if manifest_bytes is None:
        raise BundleInputError(f"{path}: a zip without manifest.json is not an evidence bundle")
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError as exc:
        raise BundleInputError(f"{path}: manifest.json is not JSON ({exc})") from None
    if (manifest.get("format"), manifest.get("format_version")) != (BUNDLE_FORMAT, BUNDLE_VERSION):
        raise BundleInputError(
            f"{path}: format {manifest.get('format')!r} version "
            f"{manifest.get('format_version')!r}; this verifier reads {BUNDLE_FORMAT} version "
            f"{BUNDLE_VERSION} only: use a verifier of the version that made the bundle"
        )
    return manifest, files, names


def _parquet(files: Mapping[str, bytes], name: str) -> pq.ParquetFile:
    """A Parquet member, opened where it lies (Members) or over its bytes (a plain dict)."""
    if isinstance(files, Members):
        return files.parquet(name)
    return pq.ParquetFile(pa.BufferReader(files[name]))


def _table(files: Mapping[str, bytes], name: str, columns: list[str] | None = None) -> pa.Table:
    """A whole Parquet member (`columns` of it): for the small ones. The samples are read
    a row group at a time (`_row_groups`)."""
    return _parquet(files, name).read(columns=columns)


def _row_groups(
    files: Mapping[str, bytes], name: str, columns: list[str] | None = None
) -> Iterator[pa.Table]:
    """A Parquet member one row group at a time: the working set is one row group (the
    bundle writes the samples in row groups of at most 1 Mi rows)."""
    pf = _parquet(files, name)
    for i in range(pf.num_row_groups):
        yield pf.read_row_group(i, columns=columns)


def _doc(files: Mapping[str, bytes], name: str) -> Any:
    return json.loads(files[name])
