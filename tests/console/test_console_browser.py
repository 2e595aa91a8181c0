"""The web console in a real browser: Debian's ``chromium`` driven by Playwright, against a real
``agent-sessions serve`` with real sandboxes and the scripted stand-in model.

Skipped, saying why, when chromium, Playwright or the sandbox tools are missing (a laptop);
``make test`` installs chromium, so CI runs them. Screenshots of the main screens go to
``CONSOLE_SCREENSHOTS`` (the run's summary prints where).
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import CONSOLE_SCREENSHOTS, Server
from tests.sandbox.conftest import local_unavailable_reason
from tests.support.model_server import (
    Call,
    Fail,
    ModelServer,
    ScriptStep,
    Text,
    ToolCalls,
    echo_last_tool_result,
)
from tests.support.served import create_account, serve_with_stand_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TIMEOUT_MS = 90_000
"""How long an expectation may wait: a sandbox to provision or hibernate on a busy machine."""

QUESTION = {
    "question": "Which color?",
    "header": "Color",
    "options": [{"label": "Red"}, {"label": "Blue"}],
}


def scripts(holds: dict[str, threading.Event]) -> dict[str, list[ScriptStep]]:
    """Every test's script, registered before the server starts: it lists the stand-in's
    models once and caches them, and the console offers only what it lists."""
    return {
        "console-turn": [
            ToolCalls([Call("bash", {"command": "echo 'hi from the sandbox' | tee note.txt"})]),
            Text("**Done.** It ran:\n\n```python\nprint('hi from the sandbox')\n```\n", chunks=4),
        ],
        "console-reload": [
            ToolCalls([Call("bash", {"command": "echo before-the-reload"})]),
            Text("After the reload.", hold=holds["reload"]),
        ],
        "console-stop": [  # stopped in its second command (a stop waits for no model)
            ToolCalls([Call("bash", {"command": "echo partial-output"})]),
            ToolCalls([Call("bash", {"command": "printf 'still-%s' compiling; sleep 600"})]),
            Text("Never shown."),
        ],
        "console-approve": [
            ToolCalls([Call("bash", {"command": "echo approved-run"})]),
            Text("The approved call ran."),
        ],
        "console-fail": [Fail(400, "scripted refusal")],
        "console-ask": [
            ToolCalls([Call("ask_user_question", {"questions": [QUESTION]})]),
            echo_last_tool_result,
        ],
    }


@dataclass
class Console:
    server: Server
    key: str
    model: ModelServer
    browser: Browser
    holds: dict[str, threading.Event]
    pages: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Script errors and console errors of every page (a refused request's own line aside):
    none is expected, a Content-Security-Policy violation included."""

    def watch(self, page: Page) -> Page:
        def console_message(msg: Any) -> None:
            print(f"console.{msg.type}: {msg.text}")  # shown with a failing test's output
            if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
                self.errors.append(msg.text)

        page.on("pageerror", lambda err: self.errors.append(f"page error: {err}"))
        page.on("console", console_message)
        return page

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.key}

    def open(self, **context: Any) -> Page:
        """A fresh browser context (its own sessionStorage), signed in, on the sessions list."""
        from playwright.sync_api import expect

        ctx = self.browser.new_context(**context)
        self.pages.append(ctx)
        page = ctx.new_page()
        self.watch(page)
        page.goto(f"{self.server.url}/")
        page.get_by_label("API key").fill(self.key)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Sessions")).to_be_visible()
        return page

    def new_session(self, page: Page, title: str) -> str:
        """Create a session from the list's form; its id (from the chat's URL)."""
        from playwright.sync_api import expect

        page.get_by_text("New session", exact=True).click()
        page.get_by_label("Title", exact=True).fill(title)
        page.get_by_role("button", name="Create session").click()
        expect(page.locator("#session-title")).to_have_text(title)
        match = re.search(r"#/s/([^/]+)/c/", page.url)
        assert match, page.url
        return match.group(1)

    def send(self, page: Page, model: str, text: str) -> None:
        page.get_by_label("Model", exact=True).select_option(f"openai/{model}")
        page.get_by_label("Message", exact=True).fill(text)
        page.get_by_role("button", name="Send", exact=True).click()

    def assert_labelled(self, page: Page) -> None:
        """Every visible form control has a label (or an aria-label) and every button a name."""
        unnamed = page.evaluate(
            """() => [...document.querySelectorAll("input, select, textarea, button")]
                .filter((el) => el.offsetParent !== null && el.type !== "hidden")
                .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
                    && !(el.tagName === "BUTTON" && el.textContent.trim()))
                .map((el) => el.outerHTML.slice(0, 120))"""
        )
        assert unnamed == []

    def shot(self, page: Page, name: str) -> None:
        CONSOLE_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(CONSOLE_SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def console() -> Iterator[Console]:
    """A real ``serve`` (fresh SQLite, real sandboxes, the stand-in as its model), an account,
    and headless chromium."""
    if CHROMIUM is None:
        pytest.skip(
            "CONSOLE BROWSER TESTS SKIPPED: chromium not installed "
            "(make test installs it; or apt-get install chromium)"
        )
    reason = local_unavailable_reason()  # before playwright's, so this skip is the one said
    if reason:
        pytest.skip(reason)
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="CONSOLE BROWSER TESTS SKIPPED: playwright not installed"
    )
    sync_api.expect.set_options(timeout=TIMEOUT_MS)
    holds = {"reload": threading.Event()}
    with serve_with_stand_in("agent-sessions-console-", uid_offset=170) as (srv, model):
        for name, steps in scripts(holds).items():
            model.script(name, steps)
        try:
            key = create_account(srv, "console")
            with sync_api.sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
                )
                console = Console(srv, key, model, browser, holds)
                try:
                    yield console
                finally:
                    for event in holds.values():  # no held model request outlives the tests
                        event.set()
                    for ctx in console.pages:
                        ctx.close()
                    browser.close()
        finally:
            for event in holds.values():
                event.set()


@pytest.fixture(autouse=True)
def no_page_errors(console: Console) -> Iterator[None]:
    console.errors.clear()
    yield
    assert console.errors == []


def test_sign_in_create_a_session_and_stream_a_turn(console: Console) -> None:
    """A refused key, then the real one; a new session; a turn whose bash call and markdown
    reply stream in; its diff and files; the phone layout; archiving."""
    from playwright.sync_api import expect

    ctx = console.browser.new_context()
    console.pages.append(ctx)
    page = console.watch(ctx.new_page())
    page.goto(f"{console.server.url}/")
    page.get_by_label("API key").fill("ask_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("refused")
    console.shot(page, "01-sign-in")

    page = console.open()
    sid = console.new_session(page, "Browser turn")
    console.send(page, "console-turn", "Write a note and show it")
    reply = page.locator(".msg-assistant")
    expect(reply.locator(".tool-bash .terminal")).to_contain_text("hi from the sandbox")
    expect(reply.locator(".tool-bash .badge")).to_have_text("done")
    expect(reply.locator(".md strong")).to_have_text("Done.")
    expect(reply.locator(".md pre code.hljs .hljs-built_in")).to_have_text("print")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_enabled()
    console.shot(page, "03-chat")
    console.assert_labelled(page)

    # The stored conversation draws the same after a reload, the model it used preselected.
    page.reload()
    expect(reply.locator(".tool-bash .terminal")).to_contain_text("hi from the sandbox")
    expect(reply.locator(".md strong")).to_have_text("Done.")
    expect(page.get_by_label("Model", exact=True)).to_have_value("openai/console-turn")
    figures = page.locator(".usage-card table")  # this chat's and the whole session's
    expect(figures.locator("thead")).to_have_text("This chatSession")
    expect(figures.locator("tbody tr").first).to_have_text("Turns11")

    page.get_by_role("tab", name="Changes").click()
    diff = page.locator(".diff-file", has_text="note.txt")
    expect(diff.locator(".badge")).to_have_text("added")
    expect(diff.locator(".line.add")).to_have_text("+hi from the sandbox")
    page.get_by_label("Layout").select_option("split")
    expect(diff.locator("td.add")).to_have_text("hi from the sandbox")
    console.shot(page, "04-diff")

    page.get_by_role("tab", name="Files").click()
    page.get_by_role("button", name="note.txt", exact=True).click()
    expect(page.locator(".file-viewer pre")).to_have_text("hi from the sandbox")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download note.txt").click()
    assert download.value.suggested_filename == "note.txt"
    console.shot(page, "05-files")

    phone = console.open(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone.goto(page.url)
    expect(phone.locator(".msg-assistant .tool-bash .terminal")).to_contain_text("hi from")
    console.shot(phone, "06-chat-phone")

    page.get_by_role("button", name="Archive").click()
    expect(page.get_by_role("button", name="Unarchive")).to_be_visible()
    page.get_by_role("link", name="Sessions", exact=True).click()
    item = page.locator(f'a[data-session-id="{sid}"]')
    expect(page.get_by_label("Show")).to_have_value("active")
    expect(item).to_have_count(0)
    page.get_by_label("Show").select_option("archived")
    expect(item.locator(".badge-status-archived")).to_have_text("archived")
    page.get_by_label("Search").fill("no such title")
    expect(item).to_have_count(0)
    page.get_by_label("Search").fill("browser turn")
    expect(item).to_have_count(1)
    console.shot(page, "02-sessions")
    page.get_by_text("New session", exact=True).click()
    console.assert_labelled(page)


def test_a_reload_mid_stream_resumes_and_stop_keeps_the_partial_reply(console: Console) -> None:
    """Reloaded while the model is held, the page picks the live turn up and shows the rest
    when it comes; the sessions list shows it streaming. A turn stopped in a long command
    keeps what it did before, the command ends as an error."""
    from playwright.sync_api import expect

    page = console.open()
    sid = console.new_session(page, "Reload and stop")
    console.send(page, "console-reload", "Run something, then answer")
    expect(page.locator(".tool-bash .terminal")).to_contain_text("before-the-reload")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()

    other = console.open()  # another tab: the list shows the turn streaming
    expect(other.locator(f'a[data-session-id="{sid}"] .badge-live')).to_have_text("streaming")

    page.reload()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()  # the live turn, resumed
    expect(page.locator(".tool-bash .terminal")).to_contain_text("before-the-reload")
    console.shot(page, "07-resumed-mid-stream")
    console.holds["reload"].set()
    expect(page.locator(".msg-assistant .md")).to_have_text("After the reload.")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.locator(".msg-assistant")).to_have_count(1)

    page.get_by_role("button", name="New chat").click()
    expect(page.locator(".chat-list li")).to_have_count(2)
    expect(page.locator(".messages .empty")).to_be_visible()
    console.send(page, "console-stop", "Run something and keep going")
    first, second = page.locator(".tool-bash").nth(0), page.locator(".tool-bash").nth(1)
    expect(first.locator(".terminal")).to_contain_text("partial-output")
    expect(second.locator(".tool-arg")).to_have_text("printf 'still-%s' compiling; sleep 600")
    expect(second.locator(".badge")).to_have_text("running")
    # its output shows while it runs (the server's preliminary tool outputs; the command
    # itself, shown too, does not hold the text)
    expect(second.locator(".terminal")).to_contain_text("still-compiling")
    expect(second.locator(".terminal .running")).to_have_text("running…")
    expect(second.locator(".badge")).to_have_text("running")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".chat-status")).to_have_text("Stopped.")
    expect(page.locator(".msg-assistant .badge-warn")).to_have_text("stopped")
    expect(second.locator(".badge")).to_have_text("error")
    expect(second.locator(".error-box")).to_contain_text("Cancelled by the user")
    expect(second.locator(".error-box")).to_contain_text("still-compiling")  # kept
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_enabled()
    console.shot(page, "08-stopped")
    page.reload()  # what was stored: the partial reply, the first command's output kept
    expect(first.locator(".terminal")).to_contain_text("partial-output")
    expect(second.locator(".badge")).to_have_text("error")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()


def test_approve_a_call_and_answer_a_question(console: Console) -> None:
    from playwright.sync_api import expect

    page = console.open()
    sid = console.new_session(page, "Approvals")
    chat_id = page.url.rsplit("/c/", 1)[1]
    rules = [{"tool": "bash", "match": {"command": "approved-run"}}]
    r = httpx.patch(
        f"{console.server.url}/api/sessions/{sid}/chats/{chat_id}",
        json={"approvalRules": rules}, headers=console.headers,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    console.send(page, "console-approve", "Run it once I approve")
    tool = page.locator(".tool-bash")
    expect(tool.locator(".badge")).to_have_text("needs approval")
    expect(page.locator(".chat-status")).to_have_text("The agent waits for your answer.")
    console.shot(page, "09-approval")
    page.reload()  # the waiting call is still there to answer after a reload
    expect(tool.locator(".badge")).to_have_text("needs approval")
    tool.get_by_role("button", name="Approve").click()
    expect(tool.locator(".terminal")).to_contain_text("approved-run")
    expect(page.locator(".msg-assistant .md")).to_have_text("The approved call ran.")

    page.get_by_role("button", name="New chat").click()
    expect(page.locator(".messages .empty")).to_be_visible()
    console.send(page, "console-ask", "Ask me something")
    form = page.locator(".tool-ask_user_question form")
    expect(form.get_by_role("group", name="Color: Which color?")).to_be_visible()
    expect(page.locator(".tool-ask_user_question .badge")).to_have_text("needs your answer")
    console.shot(page, "10-question")
    console.assert_labelled(page)
    form.get_by_label("Blue").check()
    form.get_by_role("button", name="Send answers").click()
    expect(page.locator(".msg-assistant .md")).to_contain_text("Blue")
    expect(page.locator(".tool-ask_user_question .badge")).to_have_text("done")
    expect(page.locator(".tool-ask_user_question .answers dd")).to_have_text("Blue")


def test_hibernate_resume_a_failed_turn_and_the_bundled_api_docs(console: Console) -> None:
    from playwright.sync_api import Route, expect

    page = console.open()
    console.new_session(page, "Sandbox")
    state = page.locator("#sandbox-state")
    expect(state).to_have_text("active")
    expect(page.locator("#hibernate-countdown")).to_contain_text(re.compile(r"Hibernates in \d+"))
    page.get_by_role("button", name="Hibernate").click()
    expect(state).to_have_text("hibernated")
    expect(page.get_by_role("button", name="Resume")).to_be_enabled()
    console.shot(page, "11-hibernated")
    page.get_by_role("button", name="Resume").click()
    expect(state).to_have_text("active")
    expect(page.get_by_role("button", name="Hibernate")).to_be_enabled()

    # A model that refuses the turn: its error is shown in the reply, the chat stays usable.
    console.send(page, "console-fail", "This one fails")
    expect(page.locator(".msg-assistant .error-box")).to_contain_text("scripted refusal")
    expect(page.locator(".chat-status")).to_have_text("The turn failed.")
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_enabled()
    console.shot(page, "13-model-error")

    # /docs works offline: nothing is fetched from another host.
    elsewhere: list[str] = []

    def only_local(route: Route) -> None:
        if route.request.url.startswith(console.server.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(f"{console.server.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Agent Sessions API")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    console.shot(page, "12-api-docs")
    assert elsewhere == []
