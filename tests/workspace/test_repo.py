"""Repository binding: the URL and branch rules (pure), the API's answers, and provisioning
that clones on the host and hands the tree to a real bubblewrap sandbox (no network in it).

Remotes are real: bare repositories served by ``git daemon`` and by git's smart-HTTP backend
behind a token check, on loopback (``tests/support/git_server.py``)."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from agent_sessions.settings import Settings
from agent_sessions.store import sessions
from agent_sessions.store.models import SessionRow
from agent_sessions.store.sessions import NewSession
from agent_sessions.workspace import remote, repo
from agent_sessions.workspace.credentials import Vault
from tests.agent.conftest import AgentsFactory
from tests.conftest import Account, Backend, api_app, make_account
from tests.support.git_server import git_daemon, git_http, make_bare
from tests.workspace.repos import (
    FILES,
    OPERATOR,
    TOKEN,
    create,
    daemon_remote,
    forge_root,
    out,
    run,
    settled,
)

FORGE = "https://forge.example"


def _settings(**overrides: Any) -> Settings:
    return Settings(forge_base_url=FORGE, **overrides)


# --- the rules (pure) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/acme/widgets.git",
        "https://github.com:443/acme/widgets",
        "ssh://git@github.com/acme/widgets.git",
        "git://127.0.0.1:9418/demo.git",
        "git@github.com:acme/widgets.git",
        f"{FORGE}/acme/widgets.git",
    ],
)
def test_allowed_urls(url: str) -> None:
    assert repo.check_clone_url(_settings(), url) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("-u@x:touch${IFS}/tmp/pwned", "must not start with '-'"),
        ("--upload-pack=touch /tmp/x", "must not start with '-'"),
        ("https://ghp_secret@github.com/o/r.git", "forge credentials API"),
        ("https://x-access-token:ghp_secret@github.com/o/r.git", "forge credentials API"),
        ("git://user@host/r.git", "forge credentials API"),
        ("ssh://git:hunter2@github.com/o/r.git", "forge credentials API"),
        ("user:pass@github.com:o/r.git", "forge credentials API"),
        ("file:///etc", "not allowed"),
        ("/srv/repos/demo.git", "not allowed"),
        ("http://github.com/o/r.git", "plain http"),
        ("ext::sh -c touch% /tmp/pwned", "whitespace"),
        ("ext::sh", "must be an https"),
        ("ftp://host/r.git", "must be an https"),
        ("https://github.com/o/r.git\n", "whitespace"),
        ("ssh://-oProxyCommand=x/r.git", "host"),
        ("git@-oProxyCommand=x:r.git", "host"),
        ("https://github.com", "names no repository"),
        ("https://github.com:port/o/r", "not a valid URL"),
    ],
)
def test_refused_urls(url: str, reason: str) -> None:
    with pytest.raises(repo.BindingError) as caught:
        repo.check_clone_url(_settings(), url)
    assert caught.value.field == "cloneUrl" and reason in caught.value.message


def test_local_repos_only_when_the_operator_allows_them() -> None:
    allowed = _settings(allow_local_repos=True)
    for url in ("file:///srv/demo.git", "/srv/demo.git", "http://127.0.0.1:8080/demo.git"):
        assert repo.check_clone_url(allowed, url) == url
    with pytest.raises(repo.BindingError):
        repo.check_clone_url(allowed, "file://host/srv/demo.git")


def test_plain_http_is_allowed_for_the_configured_forge_only() -> None:
    local_forge = Settings(forge_base_url="http://127.0.0.1:8080")
    assert repo.check_clone_url(local_forge, "http://127.0.0.1:8080/o/r.git")
    with pytest.raises(repo.BindingError):
        repo.check_clone_url(local_forge, "http://127.0.0.1:8081/o/r.git")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"{FORGE}/acme/widgets.git", True),
        ("https://forge.example:443/acme/widgets.git", False),  # another origin (port named)
        ("https://evil.example/acme/widgets.git", False),
        ("git@forge.example:acme/widgets.git", False),
        ("ssh://git@forge.example/acme/widgets.git", False),
    ],
)
def test_a_token_goes_to_the_configured_forge_only(url: str, expected: bool) -> None:
    assert repo.token_applies(_settings(), url) is expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/acme/widgets.git", ("acme", "widgets")),
        ("https://gitlab.com/group/sub/widgets", ("sub", "widgets")),
        ("git@github.com:acme/widgets.git", ("acme", "widgets")),
        ("git://127.0.0.1:9418/demo.git", None),
        ("https://github.com/acme/-x", None),
    ],
)
def test_owner_and_name(url: str, expected: tuple[str, str] | None) -> None:
    assert repo.owner_and_name(url) == expected


@pytest.mark.parametrize(
    "branch", ["-x", "--force", "a..b", "a//b", "/a", "a/", "a.", ".a", "a/.b", "a.lock",
               "HEAD", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b", "a@{1}", ""],
)  # fmt: skip
def test_refused_branches(branch: str) -> None:
    with pytest.raises(repo.BindingError) as caught:
        repo.check_branch(branch)
    assert caught.value.field == "branch"


def test_binding_derives_and_checks() -> None:
    s = _settings()
    b = repo.bind(s, repo_owner="acme", repo_name="widgets", branch="dev")
    assert (b.clone_url, b.repo_owner, b.repo_name, b.branch) == (
        f"{FORGE}/acme/widgets.git", "acme", "widgets", "dev",
    )  # fmt: skip
    b = repo.bind(s, clone_url="git@github.com:Acme/Widgets.git", repo_owner="acme",
                  repo_name="widgets")  # fmt: skip
    assert b.clone_url == "git@github.com:Acme/Widgets.git"
    new = repo.bind(s, clone_url="https://github.com/o/r", branch="dev", is_new_branch=True)
    assert re.fullmatch(r"agent/[0-9a-f]{8}", new.branch or "")
    assert new.base_branch == "dev" and new.is_new_branch
    assert repo.bind(s) == repo.Binding()
    for kwargs, field in [
        ({"repo_owner": "acme"}, "repoName"),
        ({"repo_name": "widgets"}, "repoOwner"),
        ({"repo_owner": "-x", "repo_name": "w"}, "repoOwner"),
        ({"repo_owner": "a", "repo_name": ".."}, "repoName"),
        ({"clone_url": "https://github.com/o/r", "repo_owner": "o", "repo_name": "x"},
         "repoOwner"),
        ({"is_new_branch": True}, "isNewBranch"),
        ({"auto_create_pr": True}, "autoCreatePr"),
        ({"auto_commit_push": True}, "autoCommitPush"),
        ({"clone_url": "https://github.com/o/r", "branch": "-b"}, "branch"),
    ]:  # fmt: skip
        with pytest.raises(repo.BindingError) as caught:
            repo.bind(s, **kwargs)
        assert caught.value.field == field, kwargs


# --- the API ----------------------------------------------------------------------------------


def _count(backend: Backend, account: Account) -> int:
    with backend.db.read() as s:
        return int(s.scalar(select(func.count()).where(SessionRow.account_id == account.id)) or 0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cloneUrl": "file:///etc"}, "cloneUrl"),
        ({"cloneUrl": "/etc"}, "cloneUrl"),
        ({"cloneUrl": "-u@x:y"}, "cloneUrl"),
        ({"cloneUrl": "https://tok@github.com/o/r"}, "cloneUrl"),
        ({"cloneUrl": "https://github.com/o/r", "branch": "-x"}, "branch"),
        ({"cloneUrl": "https://github.com/o/r", "branch": 5}, "branch"),
        ({"repoOwner": "acme"}, "repoName"),
        ({"repoOwner": "acme", "repoName": "w", "cloneUrl": "https://github.com/x/y"},
         "repoOwner"),
        ({"isNewBranch": True}, "isNewBranch"),
        ({"autoCreatePr": True}, "autoCreatePr"),
        ({"cloneUrl": "https://github.com/o/r", "autoCommitPush": "yes"}, "autoCommitPush"),
    ],
)  # fmt: skip
def test_bad_bindings_are_400_and_create_nothing(
    backend: Backend, body: dict[str, Any], field: str
) -> None:
    alice = make_account(backend.db, "alice")
    with TestClient(api_app(backend), raise_server_exceptions=False) as client:
        r = client.post("/api/sessions", json=body, headers=alice.headers)
    assert r.status_code == 400, r.text
    assert r.json()["status"] == "error" and r.json()["path"] == ["body", field], r.json()
    assert "tok@" not in r.text
    assert _count(backend, alice) == 0


def test_the_api_answers_the_binding_at_once(backend: Backend) -> None:
    alice = make_account(backend.db, "alice")
    app = api_app(backend, forge_base_url=FORGE, allow_local_repos=True)
    with TestClient(app, raise_server_exceptions=False) as client:

        def post(body: dict[str, Any]) -> dict[str, Any]:
            r = client.post("/api/sessions", json=body, headers=alice.headers)
            assert r.status_code == 200, r.text
            return r.json()["session"]  # type: ignore[no-any-return]

        s = post({"repoOwner": "acme", "repoName": "widgets", "branch": "dev",
                  "isNewBranch": True, "autoCommitPush": True, "autoCreatePr": True})  # fmt: skip
        assert s["cloneUrl"] == f"{FORGE}/acme/widgets.git"
        assert (s["repoOwner"], s["repoName"], s["baseBranch"]) == ("acme", "widgets", "dev")
        assert re.fullmatch(r"agent/[0-9a-f]{8}", s["branch"]) and s["isNewBranch"]
        assert s["autoCommitPush"] is True and s["autoCreatePr"] is True
        s = post({"cloneUrl": "file:///srv/demo.git"})
        assert (s["cloneUrl"], s["repoOwner"], s["repoName"], s["branch"], s["baseBranch"]) == (
            "file:///srv/demo.git", "srv", "demo", None, None,
        )  # fmt: skip


# --- provisioning, end to end -----------------------------------------------------------------

sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def _repo_state(agents: Any, s: dict[str, Any]) -> dict[str, str]:
    script = (
        'printf \'%s\\n\' "$(git symbolic-ref HEAD)" "$(git config remote.origin.url)" '
        '"$(git symbolic-ref refs/remotes/origin/HEAD)" '
        '"$(git rev-parse --abbrev-ref --symbolic-full-name @{u} 2>/dev/null || echo none)" '
        '"$(git status --porcelain | wc -l)" "$(git rev-parse HEAD)" "$(cat README.md)" '
        "\"$(git for-each-ref --format='%(refname)' refs/remotes/origin/ | tr '\\n' ' ')\""
    )
    keys = ["head", "origin", "origin_head", "upstream", "dirty", "sha", "readme", "remotes"]
    return dict(zip(keys, out(agents, s, script).splitlines(), strict=True))


def test_clone_default_and_named_branch(agents: AgentsFactory, tmp_path: Path) -> None:
    a = agents(allow_local_repos=False)
    with daemon_remote(tmp_path / "served") as r:
        default = create(a, cloneUrl=r.url)
        named = create(a, cloneUrl=r.url, branch="feature")
        d, n = settled(a, default["id"]), settled(a, named["id"])
        assert d["lifecycleState"] == n["lifecycleState"] == "active", (d, n)
        got = _repo_state(a, d)
        assert got["head"] == "refs/heads/main" and got["readme"] == "main branch"
        assert got["origin"] == r.url and got["origin_head"] == "refs/remotes/origin/main"
        assert got["upstream"] == "origin/main" and got["dirty"] == "0"
        assert got["sha"] == r.sha("main")
        assert got["remotes"].split() == [
            "refs/remotes/origin/HEAD", "refs/remotes/origin/feature", "refs/remotes/origin/main",
        ]  # fmt: skip
        assert d["branch"] == "main"  # the default branch, recorded once known
        got = _repo_state(a, n)
        assert got["head"] == "refs/heads/feature" and got["readme"] == "feature branch"
        assert got["upstream"] == "origin/feature" and got["sha"] == r.sha("feature")
        assert n["branch"] == "feature"
        # Files are the sandbox's, made by its own checkout; no host path in its repository.
        listing = out(a, d, "git ls-files -s; stat -c '%u' README.md .git/config; id -u")
        owners = listing.splitlines()[-3:]
        assert owners[0] == owners[1] == owners[2], listing
        found = run_grep(a, d, str(a.settings.data_dir.resolve()))
        assert found == "", found


def run_grep(agents: Any, s: dict[str, Any], needle: str) -> str:
    """Files of the whole workspace (``.git`` included, binary files too) holding ``needle``."""
    result = run(agents, s, f"grep -r -a -l -F -e {_sh(needle)} . || true")
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def _sh(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def test_new_branch_is_named_at_once_and_made_from_its_base(
    agents: AgentsFactory, tmp_path: Path
) -> None:
    a = agents()
    with daemon_remote(tmp_path / "served") as r:
        created = create(a, cloneUrl=r.url, branch="feature", isNewBranch=True)
        branch = created["branch"]
        assert re.fullmatch(r"agent/[0-9a-f]{8}", branch) and created["baseBranch"] == "feature"
        s = settled(a, created["id"])
        assert s["lifecycleState"] == "active" and s["branch"] == branch, s
        got = _repo_state(a, s)
        assert got["head"] == f"refs/heads/{branch}" and got["readme"] == "feature branch"
        assert got["sha"] == r.sha("feature") and got["upstream"] == "none"
        assert got["origin_head"] == "refs/remotes/origin/main"
        from_default = settled(a, create(a, cloneUrl=r.url, isNewBranch=True)["id"])
        assert _repo_state(a, from_default)["sha"] == r.sha("main")


@sqlite_only
def test_missing_branch_and_unreachable_remote_fail_readably(
    agents: AgentsFactory, tmp_path: Path
) -> None:
    a = agents()
    with daemon_remote(tmp_path / "served") as r:
        for body, expected in [
            ({"cloneUrl": r.url, "branch": "nope"}, "branch 'nope' does not exist"),
            ({"cloneUrl": r.url, "branch": "nope", "isNewBranch": True},
             "branch 'nope' does not exist"),
            ({"cloneUrl": r.base + "/missing.git"}, "git clone failed"),
        ]:  # fmt: skip
            s = settled(a, create(a, **body)["id"])
            assert s["lifecycleState"] == "failed", s
            assert expected in s["lifecycleError"], s["lifecycleError"]
            assert str(a.settings.data_dir) not in s["lifecycleError"]
            assert not remote.bare_path(a.settings, s["id"]).exists()
    repos = a.settings.data_dir / "repos"
    assert sorted(p.name for p in repos.iterdir()) == []
    assert oct(repos.stat().st_mode & 0o777) == "0o700"


@sqlite_only
def test_a_repository_over_the_limit_is_not_cloned(agents: AgentsFactory, tmp_path: Path) -> None:
    a = agents(clone_max_bytes=1 << 20)
    root = tmp_path / "served"
    make_bare(root, "big", {"blob.bin": os.urandom(3 << 20)})
    with git_daemon(root) as base:
        s = settled(a, create(a, cloneUrl=f"{base}/big.git")["id"])
    assert s["lifecycleState"] == "failed"
    assert "larger than the limit (1048576 bytes)" in s["lifecycleError"], s["lifecycleError"]


@sqlite_only
def test_a_clone_growing_past_the_limit_is_stopped_midway(
    agents: AgentsFactory, tmp_path: Path
) -> None:
    """The server holds the rest of the pack after 2 MiB: the clone can only end by being
    stopped by the watcher (without it, the test would wait for the release and fail)."""
    root = tmp_path / "forge"
    make_bare(root / "acme", "big", {"blob.bin": os.urandom(4 << 20)})
    release = threading.Event()
    try:
        with git_http(root, TOKEN, hold=(2 << 20, release)) as forge:
            a = agents(forge_base_url=forge.base, forge_token=TOKEN, clone_max_bytes=1 << 20)
            s = settled(a, create(a, repoOwner="acme", repoName="big")["id"])
            assert s["lifecycleState"] == "failed"
            assert "larger than the limit (1048576 bytes)" in s["lifecycleError"], s
            assert list((a.settings.data_dir / "repos").iterdir()) == []
    finally:
        release.set()


@sqlite_only
def test_file_urls_clone_only_when_allowed(agents: AgentsFactory, tmp_path: Path) -> None:
    root = tmp_path / "served"
    make_bare(root, "demo", FILES)
    url = f"file://{root / 'demo.git'}"
    plain = agents()
    refused = plain.client.post(
        "/api/sessions", json={"cloneUrl": url}, headers=plain.account.headers
    )
    assert refused.status_code == 400 and "not allowed" in refused.json()["error"]
    a = agents(allow_local_repos=True)
    s = settled(a, create(a, cloneUrl=url)["id"])
    assert s["lifecycleState"] == "active", s
    assert out(a, s, "cat src/app.py") == "print('hi')\n"


def test_repository_less_session_gets_a_first_commit(agents: AgentsFactory) -> None:
    a = agents(git_author_name="Provisioner", git_author_email="p@example.com")
    s = settled(a, create(a)["id"])
    assert s["lifecycleState"] == "active"
    log = out(a, s, "git log --format='%an <%ae>|%s|%D'; git status --porcelain | wc -l")
    assert log.splitlines() == ["Provisioner <p@example.com>|Initial commit|HEAD -> main", "0"]
    assert s["cloneUrl"] is None and not remote.bare_path(a.settings, s["id"]).exists()


# --- over HTTP with a token -------------------------------------------------------------------


def test_clone_by_owner_and_name_with_the_accounts_token(
    agents: AgentsFactory, tmp_path: Path
) -> None:
    with git_http(forge_root(tmp_path), TOKEN) as forge:
        a = agents(forge_base_url=forge.base, forge_token=OPERATOR)
        put = a.client.put(
            "/api/account/forge-token", json={"token": TOKEN}, headers=a.account.headers
        )
        assert put.status_code == 200 and TOKEN not in put.text
        created = create(a, repoOwner="acme", repoName="widgets", branch="feature")
        assert created["cloneUrl"] == f"{forge.base}/acme/widgets.git"
        s = settled(a, created["id"])
        assert s["lifecycleState"] == "active", s
        got = _repo_state(a, s)
        assert got["readme"] == "feature branch" and got["origin"] == created["cloneUrl"]
        assert forge.requests, "the clone went elsewhere"
        for method, path, headers in forge.requests:
            assert headers.get("Authorization") == forge.expected, (method, path)
            assert TOKEN not in path and OPERATOR not in path
        assert run_grep(a, s, TOKEN) == "" and run_grep(a, s, "x-access-token") == ""
        assert TOKEN not in out(a, s, "cat .git/config; env")


@sqlite_only
def test_operator_token_is_the_fallback_and_a_wrong_token_fails_clearly(
    agents: AgentsFactory, tmp_path: Path
) -> None:
    with git_http(forge_root(tmp_path), OPERATOR) as forge:
        a = agents(forge_base_url=forge.base, forge_token=OPERATOR)
        s = settled(a, create(a, repoOwner="acme", repoName="widgets")["id"])
        assert s["lifecycleState"] == "active", s
        a.client.put("/api/account/forge-token", json={"token": TOKEN}, headers=a.account.headers)
        s = settled(a, create(a, repoOwner="acme", repoName="widgets")["id"])
        assert s["lifecycleState"] == "failed"
        assert s["lifecycleError"] == (
            "git clone failed: the forge refused the credentials (set a valid token with PUT "
            "/api/account/forge-token)"
        )
        sent = {headers.get("Authorization") for _, _, headers in forge.requests}
        assert forge.expected in sent and len(sent) == 2  # the operator's, then the account's


def test_the_tree_reaches_a_vercel_sandbox_too(backend: Backend, tmp_path: Path) -> None:
    """The same hand-over on the Vercel provider (over its labelled STAND-IN transport): the
    ``.git`` arrives through the provider's own restore, the VM checks it out."""
    from agent_sessions.sandbox._vercel_fake import bwrap_available, fake_vercel_provider

    if not bwrap_available():
        pytest.skip("VERCEL STAND-IN SKIPPED: it runs commands under bwrap, which is missing")
    account = make_account(backend.db)
    data = tmp_path / "vercel"
    settings = Settings(data_dir=data)
    with daemon_remote(tmp_path / "served") as r:
        with backend.db.write() as db:
            row, _ = sessions.create_session(
                db, account_id=account.id,
                new=NewSession(clone_url=r.url, branch="feature", sandbox_type="vercel"),
            )  # fmt: skip
            sid = row.id

        async def go() -> str:
            async with fake_vercel_provider(data) as provider:
                box = await provider.create(sid)
                try:
                    await remote.provision(settings, backend.db, Vault(settings), sid, box)
                    done = await box.exec(
                        "git status -sb | head -1; cat README.md; git config remote.origin.url"
                    )
                    assert done.exit_code == 0, done.stderr
                    return done.stdout
                finally:
                    await box.destroy()

        got = asyncio.run(go())
    assert got.splitlines() == ["## feature...origin/feature", "feature branch", r.url]
    assert not list((data / "snapshots").glob("clone-*"))  # the hand-over archive is gone
