"""Where audit objects go. A sink only moves bytes: `put` (atomic, never overwriting), `get`, `keys`.

`file://PATH` is the default. The S3 sink (`s3://bucket/prefix`) is the next step of issue 5.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator, Protocol


class ObjectExists(Exception):
    """A put would overwrite an object: the audit trail never changes what it wrote."""


class Sink(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def keys(self, prefix: str = "") -> Iterator[str]: ...


class FileSink:
    """A folder: each key a file below it, written to a temp file and linked into place."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"key {key!r} leaves the sink's folder")
        return path

    def put(self, key: str, data: bytes) -> None:
        """Write `data` under `key` durably and atomically; an existing key raises `ObjectExists`."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(tmp, path)  # fails if the key exists: no overwrite, even racing another writer
            except FileExistsError:
                raise ObjectExists(key) from None
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        finally:
            os.unlink(tmp)

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key under `prefix`, sorted."""
        found = []
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(key)
        return iter(sorted(found))


def open_sink(url: str) -> Sink:
    """The sink a URL names (`file://PATH`)."""
    if url.startswith("file://"):
        return FileSink(url.removeprefix("file://"))
    raise ValueError(f"unsupported sink {url!r} (file://PATH; s3:// is not built yet)")
