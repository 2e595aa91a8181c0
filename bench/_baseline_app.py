"""Baseline for ``bench/api.py``: the floor of an authenticated ``GET /api/sessions/{id}``.

The same work as our route, with nothing around it: an ``async def`` Starlette handler on ONE
``sqlite3`` connection used directly on the event loop (no thread pool, no ORM, no Pydantic)
that

1. takes the key from ``x-api-key`` (or ``Authorization: Bearer``) and hashes it as the
   service does (``agent_sessions.auth.keys.hash_key``: SHA-256, hex);
2. looks the hash up among the unrevoked keys (``api_keys.key_hash``, ``revoked_at IS NULL``);
3. reads the session row by id and checks that the key's account owns it (401, 404, 403 with
   our error shape otherwise);
4. answers ``{"session": {...}}`` with our ``Session`` object's fields (camelCase, JSON columns
   decoded, timestamps in ISO 8601 UTC), serialised with ``json.dumps``.

What is left is what any implementation pays: HTTP, routing, a hash, two indexed reads, JSON.
A WAL read never waits on a lock, so running it on the loop is safe; a thread hop per request
would cost more than the read. Served by :func:`serve` with the same uvicorn settings as
``agent-sessions serve``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# The same as agent_sessions.store.database._SQLITE_PRAGMAS.
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=ON",
)
KEY_SQL = "SELECT account_id FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL"
SESSION_SQL = "SELECT * FROM sessions WHERE id = ?"

# Session's wire fields (camelCase) and the column each comes from.
FIELDS = {
    "id": "id",
    "userId": "account_id",
    "artistId": "artist_id",
    "title": "title",
    "status": "status",
    "repoOwner": "repo_owner",
    "repoName": "repo_name",
    "branch": "branch",
    "cloneUrl": "clone_url",
    "isNewBranch": "is_new_branch",
    "globalSkillRefs": "global_skill_refs",
    "sandboxState": "sandbox_state",
    "lifecycleState": "lifecycle_state",
    "lifecycleVersion": "lifecycle_version",
    "lastActivityAt": "last_activity_at",
    "sandboxExpiresAt": "sandbox_expires_at",
    "hibernateAfter": "hibernate_after",
    "lifecycleRunId": "lifecycle_run_id",
    "lifecycleError": "lifecycle_error",
    "linesAdded": "lines_added",
    "linesRemoved": "lines_removed",
    "snapshotUrl": "snapshot_url",
    "snapshotCreatedAt": "snapshot_created_at",
    "snapshotSizeBytes": "snapshot_size_bytes",
    "cachedDiff": "cached_diff",
    "cachedDiffUpdatedAt": "cached_diff_updated_at",
    "createdAt": "created_at",
    "updatedAt": "updated_at",
    "autoCommitPush": "auto_commit_push",
    "autoCreatePr": "auto_create_pr",
    "prNumber": "pr_number",
    "prStatus": "pr_status",
    "baseBranch": "base_branch",
}
JSON_COLUMNS = frozenset({"global_skill_refs", "sandbox_state", "cached_diff"})
BOOL_COLUMNS = frozenset({"is_new_branch", "auto_commit_push", "auto_create_pr"})
TIME_COLUMNS = frozenset(c for c in FIELDS.values() if c.endswith(("_at", "_after")))


def _error(status: int, message: str) -> Response:
    body = json.dumps({"status": "error", "error": message})
    return Response(body, status, media_type="application/json")


def _wire(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in JSON_COLUMNS:
        return json.loads(value)
    if column in BOOL_COLUMNS:
        return bool(value)
    if column in TIME_COLUMNS:  # stored as naive UTC "YYYY-MM-DD HH:MM:SS.ffffff"
        return value.replace(" ", "T") + "Z"
    return value


def create_app(db_path: str) -> Starlette:
    conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    conn.row_factory = sqlite3.Row

    async def get_session(request: Request) -> Response:
        key = request.headers.get("x-api-key")
        if key is None:
            scheme, _, key = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer":
                return _error(401, "Missing credentials: send x-api-key or Authorization: Bearer")
        digest = hashlib.sha256(key.strip().encode()).hexdigest()
        found = conn.execute(KEY_SQL, (digest,)).fetchone()
        if found is None:
            return _error(401, "Invalid API key or token")
        row = conn.execute(SESSION_SQL, (request.path_params["sessionId"],)).fetchone()
        if row is None:
            return _error(404, "Session not found")
        if row["account_id"] != found["account_id"]:
            return _error(403, "You do not have access to this session")
        session = {field: _wire(column, row[column]) for field, column in FIELDS.items()}
        return Response(json.dumps({"session": session}), media_type="application/json")

    return Starlette(routes=[Route("/api/sessions/{sessionId}", get_session)])


def serve(db_path: str, host: str, port: int) -> None:
    """Same ``uvicorn.run`` settings as ``agent-sessions serve`` (see ``agent_sessions.cli``)."""
    uvicorn.run(
        create_app(db_path),
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        server_header=False,
        loop="asyncio",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True, help="SQLite database file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(args.db, args.host, args.port)
