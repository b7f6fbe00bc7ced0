"""Where audit objects go. A sink only moves bytes: `put` (atomic, never overwriting), `get`, `keys`.

- `file://PATH` (the default): a folder.
- `s3://bucket/prefix`: any S3 API through boto3, configured the usual AWS way (`AWS_ENDPOINT_URL`,
  `AWS_REGION`, credentials from the environment or files), so AWS S3, MinIO or moto alike.
"""
from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Protocol


class ObjectExists(Exception):
    """A put would overwrite an object: the audit trail never changes what it wrote."""


class Sink(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def keys(self, prefix: str = "") -> Iterator[str]: ...
    def folders(self, prefix: str) -> list[str]: ...


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
        self._make_folders(path.parent)
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
            _fsync_dir(path.parent)
        finally:
            os.unlink(tmp)

    def _make_folders(self, folder: Path) -> None:
        """Create the folder and its missing parents, each made durable in its parent (an fsync per new entry)."""
        if folder.is_dir():
            return
        self._make_folders(folder.parent)
        folder.mkdir(exist_ok=True)
        _fsync_dir(folder.parent)

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key under `prefix`, sorted."""
        found = []
        folder = prefix.rpartition("/")[0]  # only the folder the prefix names can hold its keys
        for dirpath, _, files in os.walk(self._path(folder) if folder else self.root):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(key)
        return iter(sorted(found))

    def folders(self, prefix: str) -> list[str]:
        """The names of the folders just below `prefix` (a key prefix ending in "/"), sorted."""
        try:
            return sorted(entry.name for entry in os.scandir(self._path(prefix) if prefix.strip("/") else self.root)
                          if entry.is_dir())
        except FileNotFoundError:
            return []


def _fsync_dir(folder: Path) -> None:
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class S3Sink:
    """A bucket (and key prefix). Each put is one PUT with its SHA-256 checksum and `If-None-Match: *`."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None, lock_mode: str | None = None,
                 lock_days: int | None = None):
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/")
        # Short timeouts: a hung store should show as a failure the exporter retries, not a stall.
        self.client = client or boto3.client("s3", config=Config(
            connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 2}))
        self.lock_mode, self.lock_days = lock_mode, lock_days

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        """Write one object; the store checks the checksum, and refuses if the key exists (`ObjectExists`)."""
        from botocore.exceptions import ClientError

        args: dict[str, Any] = {
            "Bucket": self.bucket, "Key": self._key(key), "Body": data, "IfNoneMatch": "*",
            "ChecksumAlgorithm": "SHA256", "ChecksumSHA256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
        }
        if self.lock_mode:
            args["ObjectLockMode"] = self.lock_mode
            args["ObjectLockRetainUntilDate"] = datetime.now(timezone.utc) + timedelta(days=self.lock_days or 1)
        try:
            self.client.put_object(**args)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise ObjectExists(key) from None
            raise

    def versioning(self, enable: bool = False) -> str:
        """The bucket's versioning state ("Enabled", "Suspended" or "Off"), after switching it on if `enable`."""
        state = self.client.get_bucket_versioning(Bucket=self.bucket).get("Status", "Off")
        if enable and state != "Enabled":
            self.client.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
            state = self.client.get_bucket_versioning(Bucket=self.bucket).get("Status", "Off")
        return state

    def get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key under `prefix`, in order (without the sink's own prefix)."""
        strip = len(self.prefix) + 1 if self.prefix else 0
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix))
        for page in pages:
            for item in page.get("Contents", ()):
                yield item["Key"][strip:]


    def folders(self, prefix: str) -> list[str]:
        """The names of the "folders" just below `prefix` (a key prefix ending in "/"), sorted."""
        names = []
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix),
                                                                      Delimiter="/")
        for page in pages:
            for item in page.get("CommonPrefixes", ()):
                names.append(item["Prefix"].rstrip("/").rsplit("/", 1)[-1])
        return sorted(names)


def open_sink(url: str, **options: Any) -> Sink:
    """The sink a URL names: `file://PATH` or `s3://bucket[/prefix]` (options go to `S3Sink`)."""
    if url.startswith("file://"):
        return FileSink(url.removeprefix("file://"))
    if url.startswith("s3://"):
        return S3Sink(*split_s3_url(url), **options)
    raise ValueError(f"unsupported sink {url!r}: file://PATH or s3://bucket/prefix")


def split_s3_url(url: str) -> tuple[str, str]:
    """(bucket, key prefix without its outer slashes) of an `s3://bucket[/prefix]` URL."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")
