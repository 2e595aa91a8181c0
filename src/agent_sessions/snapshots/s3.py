"""Snapshots in an S3-compatible bucket (AWS S3, MinIO, R2, …), for scaled-out deployments.

Credentials and region come from boto3's standard chain (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, profiles, instance roles);
the bucket, endpoint and prefix from settings. Same guarantees as the local store, mapped onto
S3's primitives:

* *temp name*: the archive is streamed as a multipart upload to ``<prefix>.tmp/…``; a multipart
  object only appears once completed, and a crash leaves an incomplete upload that the next
  save of the id aborts (add a bucket lifecycle rule to expire ``.tmp/`` as a backstop);
* *rename*: a server-side copy to ``<prefix><id>.tar.zst`` that also attaches the SHA-256 as
  object metadata (it cannot be known when the upload starts);
* *verify*: the final object is read back and hashed before ``save`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from agent_sessions.faults import fault_point
from agent_sessions.snapshots._archive import write_archive
from agent_sessions.snapshots._restore import restore_stream
from agent_sessions.snapshots._streams import HashingReader, HashingWriter
from agent_sessions.snapshots.base import SnapshotInfo, SnapshotStore, validate_snapshot_id
from agent_sessions.snapshots.errors import (
    InvalidSnapshotUrl,
    SnapshotCorrupt,
    SnapshotNotFound,
    SnapshotStoreUnavailable,
)

if TYPE_CHECKING:
    from collections.abc import Callable

_P = ParamSpec("_P")
_T = TypeVar("_T")

__all__ = ["S3SnapshotStore"]

_SUFFIX = ".tar.zst"
_SHA_META = "sha256"
_CONTENT_TYPE = "application/zstd"
PART_SIZE = 16 << 20
"""Multipart part size: S3 wants ≥ 5 MiB; 16 MiB keeps a 10,000-part upload at 160 GB."""
PARTS_IN_FLIGHT = 4
"""Parts uploaded concurrently; bounds memory to ``PART_SIZE × (PARTS_IN_FLIGHT + 1)``."""


class S3SnapshotStore(SnapshotStore):
    """Snapshots as objects ``s3://<bucket>/<prefix><id>.tar.zst``."""

    kind = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "snapshots/",
        endpoint_url: str | None = None,
        client: Any | None = None,
        part_size: int = PART_SIZE,
    ) -> None:
        prefix = prefix.lstrip("/")
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.part_size = part_size
        self._endpoint_url = endpoint_url
        self._client = client
        self._given = client
        self._client_lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The boto3 client, built on first use (boto3 clients are thread-safe)."""
        with self._client_lock:
            if self._client is None:
                self._client = boto3.client(
                    "s3",
                    endpoint_url=self._endpoint_url,
                    config=Config(retries={"mode": "standard", "max_attempts": 5}),
                )
            return self._client

    def close(self) -> None:
        """Close the client this store built (one passed in is the caller's to close)."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None and client is not self._given:
            client.close()

    def _parse(self, url: str) -> str:
        head = f"s3://{self.bucket}/{self.prefix}"
        if not isinstance(url, str) or not url.startswith(head) or not url.endswith(_SUFFIX):
            raise InvalidSnapshotUrl(f"not a snapshot URL of this store: {url!r}")
        return validate_snapshot_id(url[len(head) : -len(_SUFFIX)])

    def _key(self, url: str) -> str:
        return f"{self.prefix}{self._parse(url)}{_SUFFIX}"

    def _url(self, snapshot_id: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{snapshot_id}{_SUFFIX}"

    # --- save ------------------------------------------------------------------------------

    async def save(self, workspace: Path, snapshot_id: str) -> SnapshotInfo:
        validate_snapshot_id(snapshot_id)
        return await asyncio.to_thread(_translating(self._save), workspace, snapshot_id)

    def _save(self, workspace: Path, snapshot_id: str) -> SnapshotInfo:
        key = f"{self.prefix}{snapshot_id}{_SUFFIX}"
        tmp_prefix = f"{self.prefix}.tmp/{snapshot_id}{_SUFFIX}."
        self._clean_temporaries(tmp_prefix)
        tmp_key = f"{tmp_prefix}{secrets.token_hex(6)}"
        upload = _MultipartUpload(self.client, self.bucket, tmp_key, self.part_size)
        try:
            sink = HashingWriter(upload)
            write_archive(workspace, sink)
            fault_point("save.written")
            upload.complete()
        except BaseException:
            upload.abort()
            raise
        fault_point("save.synced")
        digest = sink.hexdigest()
        try:
            self.client.copy(
                {"Bucket": self.bucket, "Key": tmp_key},
                self.bucket,
                key,
                ExtraArgs={
                    "Metadata": {_SHA_META: digest},
                    "MetadataDirective": "REPLACE",
                    "ContentType": _CONTENT_TYPE,
                },
            )
            fault_point("save.renamed")
        finally:
            self.client.delete_object(Bucket=self.bucket, Key=tmp_key)
        fault_point("save.recorded")
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        reader = HashingReader(body)
        reader.drain()
        body.close()
        if (reader.hexdigest(), reader.size) != (digest, sink.size):
            self.client.delete_object(Bucket=self.bucket, Key=key)
            raise SnapshotCorrupt(f"snapshot {snapshot_id} failed verification after upload")
        return SnapshotInfo(
            url=self._url(snapshot_id),
            size_bytes=sink.size,
            sha256=digest,
            created_at=datetime.now(UTC),
        )

    def _clean_temporaries(self, tmp_prefix: str) -> None:
        """Abort uploads and remove temporaries a crashed save of this id left behind."""
        uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=tmp_prefix)
        for up in uploads.get("Uploads", []):
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"]
            )
        listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=tmp_prefix)
        for obj in listing.get("Contents", []):
            self.client.delete_object(Bucket=self.bucket, Key=obj["Key"])

    # --- restore ---------------------------------------------------------------------------

    async def restore(
        self,
        url: str,
        workspace: Path,
        *,
        owner: tuple[int, int] | None = None,
        fresh: bool = False,
    ) -> None:
        key = self._key(url)
        await asyncio.to_thread(_translating(self._restore), key, workspace, owner, fresh)

    def _restore(
        self, key: str, workspace: Path, owner: tuple[int, int] | None, fresh: bool
    ) -> None:
        head = self._head(key)
        if head is None:
            raise SnapshotNotFound(f"snapshot {key.rsplit('/', 1)[-1]} does not exist")
        # IfMatch: the object we read is the one whose hash and size we just looked up.
        obj = self.client.get_object(Bucket=self.bucket, Key=key, IfMatch=head["ETag"])
        body = obj["Body"]
        try:
            restore_stream(
                body,
                workspace,
                expected_sha256=head.get("Metadata", {}).get(_SHA_META),
                expected_size=head["ContentLength"],
                owner=owner,
                fresh=fresh,
            )
        finally:
            body.close()

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise
        return head

    # --- delete / exists -------------------------------------------------------------------

    async def delete(self, url: str) -> None:
        key = self._key(url)

        def delete() -> None:
            self.client.delete_object(Bucket=self.bucket, Key=key)

        await asyncio.to_thread(_translating(delete))

    async def exists(self, url: str) -> bool:
        key = self._key(url)
        return await asyncio.to_thread(_translating(lambda: self._head(key) is not None))

    def __repr__(self) -> str:
        return f"<S3SnapshotStore bucket={self.bucket!r} prefix={self.prefix!r}>"


class _MultipartUpload:
    """A write-only file that streams into an S3 multipart upload, a few parts at a time."""

    def __init__(self, client: Any, bucket: str, key: str, part_size: int) -> None:
        self._client, self._bucket, self._key = client, bucket, key
        self._part_size = part_size
        self._buffer = bytearray()
        self._futures: list[Future[dict[str, Any]]] = []
        self._pool = ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="s3-part")
        created = client.create_multipart_upload(Bucket=bucket, Key=key, ContentType=_CONTENT_TYPE)
        self._upload_id: str = created["UploadId"]

    def write(self, data: bytes) -> int:
        self._buffer += data
        while len(self._buffer) >= self._part_size:
            self._submit(bytes(self._buffer[: self._part_size]))
            del self._buffer[: self._part_size]
        return len(data)

    def _submit(self, body: bytes) -> None:
        pending = [f for f in self._futures if not f.done()]
        if len(pending) >= PARTS_IN_FLIGHT:
            pending[0].result()  # back-pressure: never more than a few parts in memory
        number = len(self._futures) + 1
        self._futures.append(self._pool.submit(self._upload_part, number, body))

    def _upload_part(self, number: int, body: bytes) -> dict[str, Any]:
        part = self._client.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
        )
        return {"PartNumber": number, "ETag": part["ETag"]}

    def complete(self) -> None:
        if self._buffer or not self._futures:
            self._submit(bytes(self._buffer))
            self._buffer.clear()
        parts = [f.result() for f in self._futures]
        self._pool.shutdown()
        self._client.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": parts},
        )

    def abort(self) -> None:
        self._pool.shutdown(cancel_futures=True)
        with contextlib.suppress(ClientError, BotoCoreError):  # the next save retries it
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )


def _status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = exc.response.get("Error", {}).get("Code")
    if code in ("404", "NoSuchKey", "NotFound"):
        return 404
    return int(status) if status is not None else None


def _translating(fn: Callable[_P, _T]) -> Callable[_P, _T]:
    """Turn boto errors into :class:`SnapshotStoreUnavailable` (the API answers 502/504)."""

    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            if _status(exc) == 404:
                raise SnapshotNotFound("snapshot does not exist") from exc
            raise SnapshotStoreUnavailable(f"snapshot store (S3) failed: {exc}") from exc
        except BotoCoreError as exc:
            raise SnapshotStoreUnavailable(f"snapshot store (S3) unreachable: {exc}") from exc

    return wrapper
