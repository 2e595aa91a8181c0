"""The last session and chat used, per server URL and API key, so that ``agent-sessions chat``
without ``--session`` picks up where it was left instead of starting (and leaving running) a
new session each time.

One small JSON file, ``$XDG_STATE_HOME/agent-sessions/chat.json`` (default
``~/.local/state``). Keys are the URL and a hash of the API key, never the key itself.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def state_file() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "agent-sessions" / "chat.json"


def _key(url: str, api_key: str) -> str:
    return f"{url.rstrip('/')} {hashlib.sha256(api_key.encode()).hexdigest()[:16]}"


def _read(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # missing or damaged: nothing remembered
    return data if isinstance(data, dict) else {}


def last_used(url: str, api_key: str) -> tuple[str, str] | None:
    """The (session id, chat id) used last with this server and key, if any."""
    entry = _read(state_file()).get(_key(url, api_key))
    if isinstance(entry, dict) and entry.get("session") and entry.get("chat"):
        return entry["session"], entry["chat"]
    return None


def remember(url: str, api_key: str, session_id: str, chat_id: str) -> None:
    """Best effort: a state directory that cannot be written only loses the convenience."""
    path = state_file()
    data = _read(path)
    data[_key(url, api_key)] = {"session": session_id, "chat": chat_id}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.chmod(0o600)
        tmp.replace(path)
    except OSError:
        pass
