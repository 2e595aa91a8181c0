"""Skills (ADR 13 §6): global skills installed from an allowed directory and from a git URL
served by ``git daemon``, workspace skills found in ``.agents/skills`` and ``.claude/skills``,
broken ones reported and skipped, the prompt naming them, the ``skill`` tool, reinstallation
after a restore, and ``.agent-sessions/`` kept out of git.

Real bubblewrap sandboxes, real git, the real app; the model is the scripted stand-in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from agent_sessions.agent.reading import READ_MAX_OUTPUT
from agent_sessions.store.models import SessionRow
from tests.agent.conftest import Agents, AgentsFactory
from tests.agent.protocol import check_protocol, tool_outputs
from tests.conftest import Backend, api_app, make_account, make_backend
from tests.support.git_server import git_daemon, make_bare
from tests.support.model_server import Call, Text, ToolCalls


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    """SQLite only: skills live in the workspace; the refs are one JSON column."""
    with make_backend("sqlite", tmp_path / "db") as fresh:
        yield fresh


def skill_md(name: str, description: str, body: str) -> str:
    return f"---\nname: {name}\ndescription: {description}\n---\n{body}"


DEPLOY_BODY = "# Deploy\nRun scripts/run.sh with target $ARGUMENTS, then report.\n"
REVIEW_BODY = "# Review\nRead the diff and list problems.\n"


@pytest.fixture
def sources(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An allowed skills directory on the host and a git daemon serving a skills repository."""
    local = tmp_path / "skills-root"
    deploy = local / "deploy"
    (deploy / "scripts").mkdir(parents=True)
    (deploy / "SKILL.md").write_text(skill_md("deploy", "Deploys the app.", DEPLOY_BODY))
    (deploy / "scripts" / "run.sh").write_text("#!/bin/sh\necho deploying\n")
    (deploy / "scripts" / "run.sh").chmod(0o755)
    (deploy / "notes.md").symlink_to("scripts/run.sh")  # a link inside the skill: copied
    (deploy / "secret").symlink_to("/etc/hostname")  # a link out of it: left out
    (local / "outside").symlink_to("/etc")  # a skill that is a link out of the source
    remotes = tmp_path / "remotes"
    make_bare(
        remotes,
        "skills",
        {
            "review/SKILL.md": skill_md("review", "Reviews changes.", REVIEW_BODY),
            "other/SKILL.md": skill_md("other", "Not asked for.", "x"),
        },
    )
    with git_daemon(remotes) as base:
        yield {"local": local, "git": f"{base}/skills.git", "base": base}


def make(agents: AgentsFactory, sources: dict[str, Any], **overrides: Any) -> Agents:
    allowed = [str(sources["local"]), f"{sources['base']}/"]
    return agents(skill_sources=allowed, **overrides)


def bash(h: Agents, sid: str, command: str) -> dict[str, Any]:
    """Run one command in the session's sandbox through a turn (the bash tool), in a chat of
    its own (the stand-in answers by the number of assistant messages in the chat)."""
    r = h.client.post(f"/api/sessions/{sid}/chats", json={}, headers=h.account.headers)
    assert r.status_code == 200, r.text
    model = h.script([ToolCalls([Call("bash", {"command": command})]), Text("ok")])
    chunks, _ = h.turn(sid, r.json()["chat"]["id"], "run it", model=model)
    out: dict[str, Any] = tool_outputs(chunks)["call_0_0"]["output"]
    assert out["exitCode"] == 0, out
    return out


def get_skills(h: Agents, sid: str) -> dict[str, Any]:
    r = h.client.get(f"/api/sessions/{sid}/skills", headers=h.account.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def system_prompt(request: dict[str, Any]) -> str:
    return "\n".join(
        str(m["content"]) for m in request["messages"] if m["role"] in ("system", "developer")
    )


# --- refused refs ---------------------------------------------------------------------------------


def test_refused_sources_are_400_and_nothing_is_stored(backend: Backend, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    (allowed / "ok").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (allowed / "escape").symlink_to(tmp_path / "elsewhere")
    prefixes = ["git://git.example/skills/", "https://git.example", "https://github.com/acme/"]
    app = api_app(backend, skill_sources=[str(allowed), *prefixes])
    alice = make_account(backend.db, "alice")
    good = {"source": str(allowed), "skillName": "ok"}
    bad = [
        ({"source": "/etc", "skillName": "passwd"}, "not under an allowed"),
        ({"source": str(allowed / "escape"), "skillName": "x"}, "not under an allowed"),
        ({"source": f"{allowed}/../elsewhere", "skillName": "x"}, "'..'"),
        ({"source": "-uevil", "skillName": "x"}, "must not start with '-'"),
        ({"source": "--upload-pack=touch /tmp/x", "skillName": "x"}, "must not start with '-'"),
        ({"source": str(allowed), "skillName": "../x"}, "skillName"),
        ({"source": str(allowed), "skillName": ".."}, "skillName"),
        ({"source": str(allowed), "skillName": "-x"}, "skillName"),
        ({"source": "git://git.example/other/x.git", "skillName": "x"}, "not an allowed"),
        ({"source": "git://git.example/skills-evil/x.git", "skillName": "x"}, "not an allowed"),
        ({"source": "git://git.example/skills/../x.git", "skillName": "x"}, "'..' path"),
        ({"source": "evil/tools", "skillName": "x"}, "not an allowed"),  # github.com/evil/tools
        ({"source": "https://git.example@evil.example/x", "skillName": "x"}, "not an allowed"),
        ({"source": "https://git.example.evil/x", "skillName": "x"}, "not an allowed"),
        ({"source": "https://git.example/a/%2e%2e/x", "skillName": "x"}, "'%'"),
        ({"source": f"file://{allowed}", "skillName": "ok"}, "file:// sources"),
        ({"source": str(allowed), "skillName": "ok", "extra": 1}, "extra"),
        ({"source": 5, "skillName": "ok"}, "source"),
    ]
    with TestClient(app, raise_server_exceptions=False) as client:
        for ref, message in bad:
            r = client.post("/api/sessions", json={"globalSkillRefs": [ref]}, headers=alice.headers)
            assert r.status_code == 400, (ref, r.text)
            body = r.json()
            assert body["status"] == "error", body
            assert message in body["error"] + str(body.get("path")), (ref, body)
        for refs in ([good, {**good}], [{**good, "skillName": f"s{i}"} for i in range(51)]):
            r = client.post("/api/sessions", json={"globalSkillRefs": refs}, headers=alice.headers)
            assert r.status_code == 400, r.text
        with backend.db.read() as s:
            assert s.scalar(select(func.count()).select_from(SessionRow)) == 0

        remote = {"source": "https://git.example/team/skills.git", "skillName": "lint"}
        shorthand = {"source": "acme/tools", "skillName": "fmt"}
        refs = [good, remote, shorthand]
        r = client.post("/api/sessions", json={"globalSkillRefs": refs}, headers=alice.headers)
        assert r.status_code == 200, r.text
        sid = r.json()["session"]["id"]
        assert r.json()["session"]["globalSkillRefs"] == refs
        for ref, _ in bad[:4]:
            r = client.put(
                f"/api/sessions/{sid}/skills",
                json={"globalSkillRefs": [ref]},
                headers=alice.headers,
            )
            assert r.status_code == 400, r.text
        r = client.get(f"/api/sessions/{sid}", headers=alice.headers)
        assert r.json()["session"]["globalSkillRefs"] == refs


# --- global skills ------------------------------------------------------------------------------


def test_global_skills_from_a_directory_and_a_git_url(
    agents: AgentsFactory, sources: dict[str, Any]
) -> None:
    h = make(agents, sources)
    refs = [
        {"source": str(sources["local"]), "skillName": "deploy"},
        {"source": sources["git"], "skillName": "review"},
        {"source": str(sources["local"]), "skillName": "missing"},
        {"source": str(sources["local"]), "skillName": "outside"},
        {"source": f"{sources['base']}/nothing-here.git", "skillName": "x"},
    ]
    created = h.new_session(globalSkillRefs=refs)
    sid, cid = created["session"]["id"], created["chat"]["id"]

    listed = get_skills(h, sid)
    assert listed["globalSkillRefs"] == refs
    assert listed["skills"] == [
        {"name": "deploy", "description": "Deploys the app.", "source": "global",
         "path": ".agent-sessions/skills/deploy/SKILL.md", "modelInvocable": True},
        {"name": "review", "description": "Reviews changes.", "source": "global",
         "path": ".agent-sessions/skills/review/SKILL.md", "modelInvocable": True},
    ]  # fmt: skip
    errors = {e["path"]: e["error"] for e in listed["errors"]}
    assert set(errors) == {f".agent-sessions/skills/{n}" for n in ("missing", "outside", "x")}
    assert "no directory 'missing'" in errors[".agent-sessions/skills/missing"]
    assert "link out of its source" in errors[".agent-sessions/skills/outside"]
    assert "cloning" in errors[".agent-sessions/skills/x"]
    assert "agent-sessions-skills-" not in str(errors)  # no host temp path

    files = bash(
        h, sid,
        "cd .agent-sessions/skills && find . -path ./.install-errors.json -prune -o -print "
        "| sort && test -x deploy/scripts/run.sh && cat deploy/notes.md",
    )["stdout"]  # fmt: skip
    assert files.split("\n")[:-3] == [
        ".", "./deploy", "./deploy/SKILL.md", "./deploy/notes.md", "./deploy/scripts",
        "./deploy/scripts/run.sh", "./review", "./review/SKILL.md",
    ]  # fmt: skip
    assert files.endswith("echo deploying\n")  # "secret" (a link to /etc/hostname) left out

    # The model is told names and descriptions only; the tool gives the body.
    model = h.script(
        [
            ToolCalls([Call("skill", {"skill": "Deploy", "args": "prod"})]),
            ToolCalls([Call("skill", {"skill": "nope"})]),
            Text("done"),
        ]
    )
    chunks, _ = h.turn(sid, cid, "/deploy prod", model=model)
    check_protocol(chunks)
    outputs = tool_outputs(chunks)
    assert outputs["call_0_0"]["output"] == (
        "Skill directory: /workspace/.agent-sessions/skills/deploy\n\n"
        "# Deploy\nRun scripts/run.sh with target prod, then report."
    )
    assert outputs["call_1_0"]["type"] == "tool-output-error"
    assert outputs["call_1_0"]["errorText"] == (
        "Skill 'nope' not found. Available skills: deploy, review"
    )
    requests = h.model.requests(model.split("/", 1)[1])
    prompt = system_prompt(requests[0])
    assert "- deploy: Deploys the app.\n- review: Reviews changes." in prompt
    assert "Run scripts/run.sh" not in prompt and "Read the diff" not in prompt
    assert all(system_prompt(r) == prompt for r in requests)


def test_skills_reinstalled_after_restore_and_kept_out_of_git(
    agents: AgentsFactory, sources: dict[str, Any]
) -> None:
    h = make(agents, sources)
    local: Path = sources["local"]
    deploy = {"source": str(local), "skillName": "deploy"}
    review = {"source": sources["git"], "skillName": "review"}
    sid = h.new_session(globalSkillRefs=[deploy])["session"]["id"]
    bash(h, sid, "git init -q . && echo hi > tracked.txt")

    # Active: installed now (and, the workspace being a repository now, excluded from git).
    r = h.client.put(
        f"/api/sessions/{sid}/skills",
        json={"globalSkillRefs": [deploy, review]},
        headers=h.account.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"globalSkillRefs": [deploy, review], "installed": True, "errors": []}
    assert [s["name"] for s in get_skills(h, sid)["skills"]] == ["deploy", "review"]
    status = bash(h, sid, "git status --porcelain -z --untracked-files=all")["stdout"]
    assert status == "?? tracked.txt\0"

    # Hibernated: stored, installed by the restore, from the sources as they are then.
    r = h.client.post(f"/api/sessions/{sid}/sandbox/hibernate", headers=h.account.headers)
    assert r.status_code == 200 and r.json()["lifecycleState"] == "hibernated", r.text
    (local / "deploy" / "SKILL.md").write_text(skill_md("deploy", "Deploys, v2.", DEPLOY_BODY))
    r = h.client.put(
        f"/api/sessions/{sid}/skills", json={"globalSkillRefs": [deploy]}, headers=h.account.headers
    )
    assert r.json() == {"globalSkillRefs": [deploy], "installed": False, "errors": []}
    listed = get_skills(h, sid)  # restores the sandbox
    assert listed["skills"] == [
        {"name": "deploy", "description": "Deploys, v2.", "source": "global",
         "path": ".agent-sessions/skills/deploy/SKILL.md", "modelInvocable": True},
    ]  # fmt: skip
    assert listed["errors"] == []
    out = bash(
        h, sid,
        "git status --porcelain -z --untracked-files=all; ls -A .agent-sessions/skills; "
        "grep -c agent-sessions .git/info/exclude",
    )["stdout"]  # fmt: skip
    assert out == "?? tracked.txt\0.install-errors.json\ndeploy\n1\n"

    # An empty list removes them.
    r = h.client.put(
        f"/api/sessions/{sid}/skills", json={"globalSkillRefs": []}, headers=h.account.headers
    )
    assert r.json()["installed"] is True
    assert get_skills(h, sid) == {"skills": [], "errors": [], "globalSkillRefs": []}


# --- workspace skills ---------------------------------------------------------------------------

WORKSPACE_SKILLS = {
    ".claude/skills/lint/SKILL.md": skill_md("lint", "Lints the code.", "Run ruff $ARGUMENTS."),
    ".agents/skills/test-runner/SKILL.md": skill_md(
        "test-runner", "Runs the tests.", "Run pytest."
    ),
    ".agents/skills/colon/SKILL.md": skill_md(
        "colon", "Use when: the YAML is loose", "Colons in the description, as in the wild."
    ),
    ".agents/skills/lint-again/SKILL.md": skill_md("LINT", "A duplicate name.", "x"),
    ".agents/skills/no-frontmatter/SKILL.md": "# Just markdown\n",
    ".agents/skills/no-description/SKILL.md": "---\nname: nodesc\n---\nbody\n",
    ".claude/skills/bad-yaml/SKILL.md": "---\nname: [unclosed\ndescription: x\n---\n",
    ".claude/skills/unclosed/SKILL.md": "---\nname: u\ndescription: u\n",
    ".claude/skills/bad-name/SKILL.md": skill_md("has space", "Bad name.", "x"),
    ".agents/skills/hidden/SKILL.md": (
        "---\nname: hidden\ndescription: Users only.\ndisable-model-invocation: true\n---\nx\n"
    ),
    ".agents/skills/empty-dir/.keep": "",
    ".agents/skills/big/SKILL.md": skill_md("big", "A huge body.", ""),
}


def test_workspace_skills_found_and_broken_ones_reported(agents: AgentsFactory) -> None:
    h = agents()
    created = h.new_session()
    sid, cid = created["session"]["id"], created["chat"]["id"]
    script = " && ".join(
        f"mkdir -p {Path(p).parent} && printf %s {_sh(text)} > {p}"
        for p, text in WORKSPACE_SKILLS.items()
    )
    big = ".agents/skills/big/SKILL.md"  # a body of 600,000 characters
    script += f" && head -c {600_000} /dev/zero | tr '\\0' x >> {big}"
    bash(h, sid, script)

    listed = get_skills(h, sid)
    assert [(s["name"], s["source"], s["path"], s["modelInvocable"]) for s in listed["skills"]] == [
        ("lint", "workspace", ".claude/skills/lint/SKILL.md", True),
        ("big", "workspace", ".agents/skills/big/SKILL.md", True),
        ("colon", "workspace", ".agents/skills/colon/SKILL.md", True),
        ("hidden", "workspace", ".agents/skills/hidden/SKILL.md", False),
        ("test-runner", "workspace", ".agents/skills/test-runner/SKILL.md", True),
    ]
    assert listed["skills"][2]["description"] == "Use when: the YAML is loose"
    errors = {e["path"]: e["error"] for e in listed["errors"]}
    assert errors == {
        ".claude/skills/bad-name/SKILL.md": errors[".claude/skills/bad-name/SKILL.md"],
        ".claude/skills/bad-yaml/SKILL.md": errors[".claude/skills/bad-yaml/SKILL.md"],
        ".claude/skills/unclosed/SKILL.md": "frontmatter is not closed by a '---' line",
        ".agents/skills/empty-dir": "no SKILL.md in this directory",
        ".agents/skills/lint-again/SKILL.md": (
            "duplicate skill name 'LINT': .claude/skills/lint/SKILL.md is used"
        ),
        ".agents/skills/no-description/SKILL.md": "frontmatter has no description",
        ".agents/skills/no-frontmatter/SKILL.md": (
            "no frontmatter: SKILL.md must start with a '---' line"
        ),
    }
    assert errors[".claude/skills/bad-name/SKILL.md"].startswith("name 'has space' must be")
    assert errors[".claude/skills/bad-yaml/SKILL.md"].startswith("invalid YAML frontmatter:")

    model = h.script(
        [
            ToolCalls([Call("skill", {"skill": "lint", "args": "--fix src"})]),
            ToolCalls([Call("skill", {"skill": "hidden"})]),
            ToolCalls([Call("skill", {"skill": "big"})]),
            Text("done"),
        ]
    )
    chunks, _ = h.turn(sid, cid, "lint it", model=model)
    outputs = tool_outputs(chunks)
    cut = (
        f"\n(skill cut at {READ_MAX_OUTPUT} characters: read the rest of {big} with the read tool)"
    )
    assert outputs["call_2_0"]["output"] == (
        f"Skill directory: /workspace/.agents/skills/big\n\n{'x' * 600_000}"[:READ_MAX_OUTPUT] + cut
    )
    assert outputs["call_0_0"]["output"] == (
        "Skill directory: /workspace/.claude/skills/lint\n\nRun ruff --fix src."
    )
    assert "disable-model-invocation" in outputs["call_1_0"]["errorText"]
    prompt = system_prompt(h.model.requests(model.split("/", 1)[1])[0])
    assert (
        "- lint: Lints the code.\n- big: A huge body.\n- colon: Use when: the YAML is loose\n"
        "- test-runner: Runs the tests." in prompt
    )
    assert "hidden" not in prompt and "Run ruff" not in prompt


def _sh(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def test_a_session_without_skills_has_no_skills_section(agents: AgentsFactory) -> None:
    h = agents()
    created = h.new_session()
    sid, cid = created["session"]["id"], created["chat"]["id"]
    assert get_skills(h, sid) == {"skills": [], "errors": [], "globalSkillRefs": []}
    model = h.script([Text("hi")])
    h.turn(sid, cid, "hello", model=model)
    prompt = system_prompt(h.model.requests(model.split("/", 1)[1])[0])
    assert "Skills:" not in prompt

    # Each turn discovers afresh: a skill added since is in the next turn's prompt.
    bash(h, sid, f"mkdir -p .agents/skills/new && printf %s {_sh(skill_md('new', 'Fresh.', ''))}"
         " > .agents/skills/new/SKILL.md")  # fmt: skip
    model = h.script([Text("hi again")])
    h.turn(sid, cid, "hello again", model=model)
    prompt = system_prompt(h.model.requests(model.split("/", 1)[1])[0])
    assert "Available skills:\n- new: Fresh." in prompt
