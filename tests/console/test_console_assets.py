"""The console and ``/docs`` are served from files inside the package, nothing from a CDN, and
stay out of the OpenAPI document (the browser tests drive them: test_console_browser.py)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from agent_sessions.api.console import STATIC

JS_IMPORT = re.compile(r"""^\s*(?:import|export)\b[^;]*?from\s+["'](\.[^"']+)["']""", re.M)


def test_root_serves_the_console_with_a_strict_policy(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/console/js/app.js">' in r.text
    policy = r.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    js = client.get("/console/js/app.js")
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    assert js.headers["cache-control"] == "no-cache"
    again = client.get("/console/js/app.js", headers={"if-none-match": js.headers["etag"]})
    assert again.status_code == 304


def test_docs_use_the_bundled_swagger_ui(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", r.text)
    found = {u for pair in urls for u in pair if u}
    assert "/console/vendor/swagger-ui/swagger-ui-bundle.js" in found
    assert "/console/vendor/swagger-ui/swagger-ui.css" in found
    assert not [u for u in found if u.startswith(("http:", "https:", "//"))], found
    for url in found - {"/openapi.json"}:
        assert client.get(url).status_code == 200, url


def test_console_routes_are_not_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if not (p.startswith("/api/") or p == "/healthz")]


def test_unknown_console_asset_is_a_404(client: TestClient) -> None:
    assert client.get("/console/js/nope.js").status_code == 404


def test_every_module_import_resolves_to_a_file() -> None:
    """No build step: each relative import must name a file that is there."""
    for module in sorted((STATIC / "js").glob("*.js")):
        for target in JS_IMPORT.findall(module.read_text()):
            assert (module.parent / target).resolve().is_file(), f"{module.name}: {target}"


def test_vendored_files_are_listed_with_their_licenses() -> None:
    vendored = (STATIC.parent / "VENDORED.md").read_text()
    vendor = STATIC / "vendor"
    for path in vendor.rglob("*"):
        if path.is_file() and "licenses" not in path.parts and path.suffix in (".js", ".css"):
            listed = path.relative_to(vendor).as_posix()
            short = Path(listed).name
            assert listed in vendored or short in vendored or path.parent.name == "languages", (
                listed
            )
    licenses = {p.name.split(".LICENSE")[0] for p in (vendor / "licenses").glob("*.LICENSE")}
    assert {"marked", "dompurify", "highlight.js", "swagger-ui-dist"} <= licenses
