"""``/api/sessions/{sessionId}/files``: the workspace's tree, a file's content (JSON, or the raw
bytes streamed), uploads, and the whole workspace as a streamed ``.tar.gz`` or ``.zip``.

All live: the session's sandbox is restored first if hibernated (``workspace.live``). Ownership
is checked before anything else, the path right after, so a bad path changes nothing (not even
the idle deadline). Downloads stream chunk by chunk; the temporary archive and the open file
are released when the response ends, however it ends (:class:`Download`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from agent_sessions.api import schemas
from agent_sessions.api.deps import CallerDep
from agent_sessions.api.middleware import BodyLimit
from agent_sessions.api.responses import errors
from agent_sessions.lifecycle.live import live_sandbox, owned
from agent_sessions.settings import Settings
from agent_sessions.workspace import archive as archives
from agent_sessions.workspace import files

router = APIRouter(prefix="/api/sessions/{sessionId}/files", tags=["files"])

UPLOAD_PATH = re.compile(r"/api/sessions/[^/]+/files/content")


def body_limits(settings: Settings) -> list[BodyLimit]:
    """The upload route's body limit (``files_max_upload_bytes``), for the body-limit
    middleware; every other route keeps ``max_body_bytes``."""
    return [("PUT", UPLOAD_PATH, settings.files_max_upload_bytes)]


PathQuery = Annotated[
    str,
    Query(
        max_length=8192,
        description="Workspace-relative path (`src/app.py`); absolute paths and `..` are refused",
    ),
]
AllQuery = Annotated[
    bool,
    Query(alias="all", description="Include `.git` and `node_modules` (left out by default)"),
]
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_LIVE_ERRORS = (400, 401, 403, 404, 409, 502, 504)


def _entry(e: files.Entry) -> schemas.FileEntry:
    return schemas.FileEntry(path=e.path, type=e.type, size=e.size)


class Download(StreamingResponse):
    """A streamed attachment whose source is released once the response is over: sent,
    abandoned by the client, or never started."""

    def __init__(
        self,
        stream: files.ByteStream,
        *,
        media_type: str,
        filename: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        out = {
            "content-disposition": _disposition(filename),
            "x-content-type-options": "nosniff",
            "cache-control": "no-store",
            **(headers or {}),
        }
        if stream.size is not None:
            out["content-length"] = str(stream.size)
        super().__init__(stream, media_type=media_type, headers=out)
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()


def _disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact one in RFC 5987 form."""
    ascii_name = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in filename)
    exact = quote(filename, safe="", errors="replace")
    return f"attachment; filename=\"{ascii_name or 'download'}\"; filename*=UTF-8''{exact}"


def _wants_bytes(accept: str | None) -> bool:
    """``Accept`` names ``application/octet-stream`` and not ``application/json``."""
    types = {part.split(";", 1)[0].strip().lower() for part in (accept or "").split(",")}
    return "application/octet-stream" in types and "application/json" not in types


@router.get(
    "",
    response_model=schemas.FileTree,
    summary="The workspace's files and directories (at most 5,000; then `truncated`)",
    responses=errors(*_LIVE_ERRORS),
)
async def list_files(
    caller: CallerDep, sessionId: str, path: PathQuery = "", include_all: AllQuery = False
) -> Response:
    services, account_id = caller
    await owned(services.db, account_id, sessionId)
    root = files.clean_path(path, root=True)
    sandbox, _ = await live_sandbox(services.db, services.lifecycle, account_id, sessionId)
    tree = await files.tree(sandbox, root, include_all=include_all)
    body = schemas.FileTree(
        path=tree.path, entries=[_entry(e) for e in tree.entries], truncated=tree.truncated
    )
    return Response(body.model_dump_json(), media_type="application/json")


@router.get(
    "/content",
    response_model=schemas.FileContent,
    summary="A file's content: JSON (text, or base64 when binary), or its bytes streamed",
    description=(
        "JSON by default, for files up to `AGENT_SESSIONS_FILES_MAX_READ_BYTES` (413 above). "
        "With `raw=true`, or `Accept: application/octet-stream` (without `application/json`), "
        "the bytes are streamed as an attachment with `Content-Length`, whatever the size. "
        "A symlink is never followed: naming one, or a path through one, is 400."
    ),
    responses={
        200: {"content": {"application/octet-stream": _BINARY}},
        **errors(*_LIVE_ERRORS, 413),
    },
)
async def get_content(
    caller: CallerDep,
    sessionId: str,
    request: Request,
    path: PathQuery = "",
    raw: Annotated[bool, Query(description="Stream the raw bytes")] = False,
) -> Response:
    services, account_id = caller
    await owned(services.db, account_id, sessionId)
    rel = files.clean_path(path)
    sandbox, _ = await live_sandbox(services.db, services.lifecycle, account_id, sessionId)
    if raw or _wants_bytes(request.headers.get("accept")):
        rel, stream = await files.stream_content(sandbox, rel)
        name = rel.rsplit("/", 1)[-1]
        return Download(stream, media_type="application/octet-stream", filename=name)
    content = await files.read_content(sandbox, rel, services.settings.files_max_read_bytes)
    body = schemas.FileContent(
        path=content.path,
        size=len(content.data),
        binary=content.text is None,
        content=content.text,
        content_base64=(
            None if content.text is not None else base64.b64encode(content.data).decode()
        ),
    )
    return Response(body.model_dump_json(), media_type="application/json")


@router.put(
    "/content",
    response_model=schemas.FileEntry,
    summary="Upload a file: the raw request body becomes its content (parents created)",
    description=(
        "At most `AGENT_SESSIONS_FILES_MAX_UPLOAD_BYTES` (413 above, nothing written). An "
        "existing file is replaced atomically and keeps its mode; a directory at `path` is 409; "
        "a symlink at `path` is replaced by the file, never written through."
    ),
    openapi_extra={"requestBody": {"required": True, "content": {"*/*": _BINARY}}},
    responses=errors(*_LIVE_ERRORS, 413),
)
async def put_content(
    caller: CallerDep, sessionId: str, request: Request, path: PathQuery = ""
) -> schemas.FileEntry:
    services, account_id = caller
    await owned(services.db, account_id, sessionId)
    rel = files.clean_path(path)
    limit = services.settings.files_max_upload_bytes
    data = await files.read_limited(request.stream(), limit)
    sandbox, _ = await live_sandbox(services.db, services.lifecycle, account_id, sessionId)
    return _entry(await files.upload(sandbox, rel, data))


_ARCHIVE_TYPES: dict[str, Any] = {spec.media_type: _BINARY for spec in archives.FORMATS.values()}


@router.get(
    "/archive",
    summary="The workspace as a streamed .tar.gz or .zip (`.git`, `node_modules` left out)",
    response_class=StreamingResponse,
    responses={200: {"content": _ARCHIVE_TYPES}, **errors(*_LIVE_ERRORS)},
)
async def get_archive(
    caller: CallerDep,
    sessionId: str,
    fmt: Annotated[archives.ArchiveFormat, Query(alias="format")] = "tar.gz",
    include_all: AllQuery = False,
) -> Response:
    services, account_id = caller
    sandbox, _ = await live_sandbox(services.db, services.lifecycle, account_id, sessionId)
    stream = await archives.archive(sandbox, fmt, include_all=include_all)
    media_type = archives.FORMATS[fmt].media_type
    return Download(stream, media_type=media_type, filename=f"workspace-{sessionId}.{fmt}")
