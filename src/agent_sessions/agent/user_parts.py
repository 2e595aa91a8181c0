"""What a client may put before the model: text, and files carried inline as ``data:`` URLs.

The service fetches nothing for a client (ADR 11). pydantic-ai's Vercel adapter would download a
file part's URL (from the host: ``force_download: "allow-local"`` even lifts its check for
local addresses), pass a client-chosen provider ``file_id`` on, and read ``providerMetadata``
and ``data-*`` parts as its own records (retry feedback, structured content, compaction). So a
user message is rebuilt from an allow-list, never filtered from what came: ``text`` parts keep
their text, ``file`` parts their decoded ``data:`` URL (re-encoded as base64), ``mediaType`` and
``filename``; nothing else survives. A new message with anything else is refused whole
(:func:`new_message_parts`); a stored one (written before this rule) loses what is not allowed
(:func:`stored_user_message`), so that an old chat still runs.

The one other thing of a client that reaches a turn is an ``ask_user_question`` answer, stored
as the tool's output; pydantic-ai reads a stored tool output shaped like its file items
(``{"kind": "document-url", "url": …}``) back as a file to download, so an answer may not hold
one (:func:`check_answer`), and the history as a whole is passed through pydantic-ai's own
``sanitize_messages`` with no URL scheme allowed (:func:`without_file_references`).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import unquote_to_bytes

from pydantic_ai.messages import (
    AudioUrl,
    BinaryContent,
    DocumentUrl,
    ImageUrl,
    ModelMessage,
    UploadedFile,
    VideoUrl,
    sanitize_messages,
)

from agent_sessions.exceptions import InvalidInput

_log = logging.getLogger(__name__)

LIMIT_SETTING = "AGENT_SESSIONS_MAX_ATTACHMENT_BYTES"
_NAME = r"[a-z0-9][a-z0-9!#$&^_.+-]*"  # RFC 6838's restricted name, lower case
_MEDIA_TYPE = re.compile(rf"{_NAME}/{_NAME}")
_FILE_KINDS = frozenset(
    t.kind for t in (ImageUrl, AudioUrl, DocumentUrl, VideoUrl, BinaryContent, UploadedFile)
)
"""The ``kind`` of each of pydantic-ai's file items (its ``MULTI_MODAL_CONTENT_TYPES``)."""


class _Refused(Exception):
    """Why one part cannot be kept (the message names the part)."""


def new_message_parts(parts: Any, max_attachment_bytes: int) -> list[dict[str, Any]]:
    """The parts of a new user message, rebuilt; :class:`InvalidInput` naming the first part
    that is not allowed."""
    if not isinstance(parts, list) or not parts:
        raise InvalidInput("The user message has no parts")
    clean = []
    for index, part in enumerate(parts):
        try:
            clean.append(_clean_part(part, max_attachment_bytes))
        except _Refused as err:
            raise InvalidInput(f"parts[{index}]: {err}") from None
    return clean


def stored_user_message(message: Any, max_attachment_bytes: int) -> dict[str, Any] | None:
    """A stored user message with only what is allowed (None if nothing is left)."""
    if not isinstance(message, dict) or not isinstance(message.get("parts"), list):
        return None
    clean = []
    for index, part in enumerate(message["parts"]):
        try:
            clean.append(_clean_part(part, max_attachment_bytes))
        except _Refused as err:
            _log.warning("left out of the history: message %s parts[%d]: %s",
                         message.get("id"), index, err)  # fmt: skip
    if not clean:
        return None
    return {"id": str(message.get("id") or ""), "role": "user", "parts": clean}


def check_answer(output: Any) -> None:
    """Refuse an ``ask_user_question`` answer holding anything shaped like a file item."""
    pending = [output]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            kind = value.get("kind")
            if isinstance(kind, str) and kind in _FILE_KINDS:
                raise InvalidInput(
                    f"The ask_user_question answer may not contain a file reference (an object "
                    f"with kind {kind!r}); an answer is plain data"
                )
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)


def check_no_file_items(value: Any, where: str) -> None:
    """Refuse a value holding anything shaped like a file item (a client's assistant message:
    a tool's input, output or approval)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            kind = item.get("kind")
            if isinstance(kind, str) and kind in _FILE_KINDS:
                raise InvalidInput(
                    f"Invalid {where}: it may not contain a file reference (an object with "
                    f"kind {kind!r})"
                )
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def without_file_references(history: Sequence[ModelMessage]) -> list[ModelMessage]:
    """The model history with every file URL, uploaded-file reference and download flag gone,
    wherever it sits (a tool output too), by pydantic-ai's own sanitiser; what it drops is logged
    rather than raised as its warnings. Message metadata goes first: it is never sent to a model,
    and the UI message id ``load_messages`` keeps there would be reported on every turn."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clean = sanitize_messages(
            [replace(m, metadata=None) for m in history],
            strip_system_prompts=False, strip_instructions=False,
            allowed_file_url_schemes=(), allowed_file_url_force_download=(),
            allow_uploaded_files=False,
        )  # fmt: skip
    for warning in caught:
        _log.warning("left out of the history: %s", warning.message)
    return clean


# --- one part --------------------------------------------------------------------------------


def _clean_part(part: Any, max_attachment_bytes: int) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise _Refused("a part must be an object")
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise _Refused("a text part's text must be a string")
        return {"type": "text", "text": text}
    if kind == "file":
        return _clean_file(part, max_attachment_bytes)
    raise _Refused(f"type {kind!r} is not accepted; a user message carries 'text' and 'file' parts")


def _clean_file(part: dict[str, Any], max_attachment_bytes: int) -> dict[str, Any]:
    url = part.get("url")
    if not isinstance(url, str):
        raise _Refused("a file part's url must be a string (a data: URL)")
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme != "data":
        got = f"a {scheme}: URL" if scheme else "no URL scheme"
        raise _Refused(
            f"a file must come inline as a data: URL (got {got}); the service fetches no URLs"
        )
    declared, data = _decode_data_url(url)
    if len(data) > max_attachment_bytes:
        raise _Refused(
            f"the file is {len(data)} bytes, over the limit of {max_attachment_bytes} "
            f"({LIMIT_SETTING})"
        )
    media_type = _media_type(part.get("mediaType") or declared or "application/octet-stream")
    clean = {"type": "file", "mediaType": media_type,
             "url": f"data:{media_type};base64,{base64.b64encode(data).decode()}"}  # fmt: skip
    filename = part.get("filename")
    if filename is not None:
        if not isinstance(filename, str):
            raise _Refused("a file part's filename must be a string")
        clean["filename"] = filename
    return clean


def _decode_data_url(url: str) -> tuple[str, bytes]:
    """``data:[<media type>][;base64],<data>`` (RFC 2397) → the media type and the bytes."""
    header, comma, payload = url[len("data:") :].partition(",")
    if not comma:
        raise _Refused("malformed data: URL (no ',' before the data)")
    params = header.split(";")
    raw = unquote_to_bytes(payload)
    if len(params) > 1 and params[-1].strip().lower() == "base64":
        try:
            return params[0], base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise _Refused("malformed data: URL (its base64 does not decode)") from None
    return params[0], raw


def _media_type(value: Any) -> str:
    """``type/subtype``, lower case, without parameters."""
    essence = value.split(";", 1)[0].strip().lower() if isinstance(value, str) else ""
    if not _MEDIA_TYPE.fullmatch(essence):
        raise _Refused(f"mediaType {value!r} is not a media type such as 'image/png'")
    return essence
