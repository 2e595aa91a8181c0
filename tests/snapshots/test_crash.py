"""Crash recovery: SIGKILL a child process at each step of save and restore.

The child runs the real store code with ``AGENT_SESSIONS_FAULT_POINT`` naming the step; it dies
there with no cleanup, like a power cut or the OOM killer (the pattern of DBOS's recovery
tests). Afterwards the previous snapshot and a complete workspace (old or new) must exist, and
a retry must finish the job and leave nothing behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent_sessions.faults import FAULT_ENV
from agent_sessions.snapshots import LocalSnapshotStore, SnapshotNotFound, SnapshotStore
from agent_sessions.snapshots._swap import recover_workspace
from agent_sessions.snapshots.s3 import S3SnapshotStore

from .conftest import leftovers, make_tree, tree_digest

pytestmark = pytest.mark.anyio

_CHILD = """
import asyncio, json, sys
from pathlib import Path
cfg = json.loads(sys.argv[1])
if cfg.get("no_exchange"):
    import agent_sessions.snapshots._swap as swap
    swap._renameat2 = None
if cfg["kind"] == "local":
    from agent_sessions.snapshots import LocalSnapshotStore
    store = LocalSnapshotStore(Path(cfg["root"]))
else:
    from agent_sessions.snapshots.s3 import S3SnapshotStore
    store = S3SnapshotStore(bucket=cfg["bucket"], prefix=cfg["prefix"],
                            endpoint_url=cfg["endpoint"], part_size=5 << 20)
if cfg["op"] == "save":
    asyncio.run(store.save(Path(cfg["workspace"]), cfg["id"]))
else:
    asyncio.run(store.restore(cfg["url"], Path(cfg["workspace"])))
"""


def _config(store: SnapshotStore) -> dict[str, object]:
    if isinstance(store, LocalSnapshotStore):
        return {"kind": "local", "root": str(store.root)}
    assert isinstance(store, S3SnapshotStore)
    return {
        "kind": "s3",
        "bucket": store.bucket,
        "prefix": store.prefix,
        "endpoint": store._endpoint_url,
    }


def _crash(fault: str, cfg: dict[str, object]) -> None:
    env = {**os.environ, FAULT_ENV: fault}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(cfg)],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, (fault, proc.stderr.decode()[-2000:])


def _trees(tmp_path: Path) -> tuple[Path, Path]:
    old, new = tmp_path / "old", tmp_path / "new"
    make_tree(old, large=False)
    make_tree(new, large=False)
    (new / "src" / "pkg" / "mod.py").write_text("new version\n")
    (new / "only-in-new").write_text("new\n")
    return old, new


def _local_temporaries(store: LocalSnapshotStore) -> list[str]:
    return sorted(p.name for p in store.root.iterdir() if p.name.endswith(".tmp"))


SAVE_POINTS = ["save.written", "save.synced", "save.renamed", "save.recorded"]


@pytest.mark.parametrize("fault", SAVE_POINTS)
async def test_crash_during_save(store: SnapshotStore, tmp_path: Path, fault: str) -> None:
    old, new = _trees(tmp_path)
    previous = await store.save(old, "previous")
    resaved = await store.save(old, "resaved")  # saved again below from the new tree
    old_digest, new_digest = tree_digest(old), tree_digest(new)

    for snapshot_id in ("fresh", "resaved"):
        _crash(fault, {**_config(store), "op": "save", "workspace": str(new), "id": snapshot_id})

    # Other snapshots are never touched.
    await store.restore(previous.url, tmp_path / "check-previous")
    assert tree_digest(tmp_path / "check-previous") == old_digest
    # The snapshot being written is absent, the complete old one, or the complete new one.
    fresh_url = previous.url.replace("previous", "fresh")
    if fault in ("save.written", "save.synced"):
        assert not await store.exists(fresh_url)
    for url in (fresh_url, resaved.url):
        target = tmp_path / f"check-{url.rsplit('/', 1)[-1]}"
        try:
            await store.restore(url, target)
        except SnapshotNotFound:
            assert url == fresh_url
            continue
        assert tree_digest(target) in (old_digest, new_digest)
    assert tree_digest(new) == new_digest

    # A retried save completes and cleans up what the crash left.
    for snapshot_id in ("fresh", "resaved"):
        info = await store.save(new, snapshot_id)
        target = tmp_path / f"retry-{snapshot_id}"
        await store.restore(info.url, target)
        assert tree_digest(target) == new_digest
    if isinstance(store, LocalSnapshotStore):
        assert _local_temporaries(store) == []
    else:
        assert isinstance(store, S3SnapshotStore)
        _assert_no_s3_temporaries(store)


def _assert_no_s3_temporaries(store: S3SnapshotStore) -> None:
    client = store.client
    uploads = client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    assert uploads == []
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=store.bucket).get("Contents", [])]
    assert [k for k in keys if "/.tmp/" in k] == []


RESTORE_POINTS = ["restore.extracting", "restore.extracted", "restore.synced", "restore.swapped"]


@pytest.mark.parametrize(
    ("fault", "no_exchange"),
    [(p, False) for p in RESTORE_POINTS]
    + [("restore.old-parked", True), ("restore.swapped", True)],
)
async def test_crash_during_restore(
    store: SnapshotStore, tmp_path: Path, fault: str, no_exchange: bool
) -> None:
    _old, new = _trees(tmp_path)
    info = await store.save(new, "target")
    ws = tmp_path / "sessions" / "ws"
    make_tree(ws, large=False)
    (ws / "src" / "pkg" / "mod.py").write_text("old version\n")
    old_digest, new_digest = tree_digest(ws), tree_digest(new)

    cfg = {**_config(store), "op": "restore", "url": info.url, "workspace": str(ws)}
    _crash(fault, {**cfg, "no_exchange": no_exchange})

    if fault == "restore.old-parked":
        # The one window of the two-rename fallback: the old tree is parked beside the path.
        assert not ws.exists()
        recover_workspace(ws)
    assert tree_digest(ws) in (old_digest, new_digest)
    if fault in ("restore.extracting", "restore.extracted", "restore.synced"):
        assert tree_digest(ws) == old_digest

    # A retried restore is idempotent and removes staging and parked directories.
    await store.restore(info.url, ws)
    assert tree_digest(ws) == new_digest
    assert leftovers(ws) == []
