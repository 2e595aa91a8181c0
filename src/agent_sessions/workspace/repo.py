"""Repository binding: which URLs a session may clone, its owner and name, new-branch names.

Pure functions (no I/O), used by ``POST /api/sessions`` before anything is stored and by
:mod:`.remote` before git runs. The rules keep git from ever reading a value as an option (a
URL or branch starting with ``-``: ``git clone -u…`` runs a command), keep tokens out of URLs
(a URL is stored, returned and written into the sandbox's ``.git/config``), and keep local
paths out unless the operator allows them (a path would let a caller clone the service's own
files).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from agent_sessions.exceptions import InvalidInput
from agent_sessions.settings import Settings

__all__ = [
    "NEW_BRANCH_PREFIX",
    "Binding",
    "BindingError",
    "bind",
    "branch_problem",
    "check_branch",
    "check_clone_url",
    "forge_url",
    "new_branch_name",
    "owner_and_name",
    "token_applies",
]

NEW_BRANCH_PREFIX = "agent/"
CREDENTIALS_HINT = "put tokens in the forge credentials API (PUT /api/account/forge-token)"

_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
_SCP = re.compile(r"(?P<user>[A-Za-z0-9._-]+)@(?P<host>[^:/\s]+):(?P<path>[^\s]+)")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_BRANCH_CHARS = re.compile(r"[A-Za-z0-9._/+#-]{1,255}")
_SCHEMES = ("https", "http", "ssh", "git", "file")


class BindingError(InvalidInput):
    """A field of the repository binding breaks a rule; ``field`` is its wire name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Binding:
    """A session's validated repository binding, as stored."""

    clone_url: str | None = None
    repo_owner: str | None = None
    repo_name: str | None = None
    branch: str | None = None
    """The branch checked out: the requested one, or the new ``agent/…`` branch."""
    base_branch: str | None = None
    """For a new branch, the branch it is created from (None: the default branch)."""
    is_new_branch: bool = False


def bind(
    settings: Settings,
    *,
    clone_url: str | None = None,
    repo_owner: str | None = None,
    repo_name: str | None = None,
    branch: str | None = None,
    is_new_branch: bool = False,
    auto_commit_push: bool = False,
    auto_create_pr: bool = False,
) -> Binding:
    """Validate the binding fields of a new session; :class:`BindingError` names the field."""
    if branch is not None:
        check_branch(branch)
    if (repo_owner is None) != (repo_name is None):
        field = "repoName" if repo_name is None else "repoOwner"
        raise BindingError(field, "give both repoOwner and repoName, or neither")
    if clone_url is not None:
        check_clone_url(settings, clone_url)
    owner: str | None = None
    name: str | None = None
    if repo_owner is not None and repo_name is not None:
        owner = _check_name("repoOwner", repo_owner)
        name = _check_name("repoName", repo_name).removesuffix(".git")
        if clone_url is None:
            clone_url = forge_url(settings, owner, name)
        else:
            derived = owner_and_name(clone_url)
            if derived is None or (derived[0].lower(), derived[1].lower()) != (
                owner.lower(),
                name.lower(),
            ):
                raise BindingError("repoOwner", "repoOwner/repoName do not match cloneUrl")
    elif clone_url is not None:
        owner, name = owner_and_name(clone_url) or (None, None)
    if clone_url is None:
        for field, value in (
            ("isNewBranch", is_new_branch),
            ("autoCommitPush", auto_commit_push),
            ("autoCreatePr", auto_create_pr),
        ):
            if value:
                raise BindingError(field, "needs a repository (cloneUrl or repoOwner + repoName)")
    if is_new_branch:
        return Binding(clone_url, owner, name, new_branch_name(), branch, True)
    return Binding(clone_url, owner, name, branch, None, False)


def check_branch(branch: str) -> str:
    """``branch`` if git accepts it as a branch name (``git check-ref-format --branch``,
    narrowed to plain ASCII) and it cannot be read as an option; else :class:`BindingError`."""
    problem = branch_problem(branch)
    if problem:
        raise BindingError("branch", problem)
    return branch


def branch_problem(branch: str) -> str | None:
    """What is wrong with ``branch`` as a branch name, or None."""
    if branch.startswith("-"):
        return "must not start with '-'"
    if not _BRANCH_CHARS.fullmatch(branch):
        return "use 1-255 of the characters A-Z a-z 0-9 . _ / + # -"
    parts = branch.split("/")
    if branch == "HEAD" or ".." in branch or any(not p for p in parts):
        return "is not a valid git branch name"
    if any(p.startswith(".") or p.endswith(".lock") for p in parts) or branch.endswith("."):
        return "is not a valid git branch name"
    return None


def check_clone_url(settings: Settings, url: str) -> str:
    """``url`` if a session may clone it; else :class:`BindingError` saying why.

    Allowed: ``https://``, ``ssh://``, ``git://`` and ``user@host:path``; ``http://`` only for
    the configured forge itself (a local forge in development) or with ``allow_local_repos``;
    ``file://`` and absolute paths only with ``allow_local_repos``. No credentials in the URL.
    """
    if url.startswith("-"):
        raise BindingError("cloneUrl", "must not start with '-'")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise BindingError("cloneUrl", "must not contain whitespace or control characters")
    scheme = url.split("://", 1)[0].lower() if "://" in url else None
    if scheme is None:
        return _check_scp_or_path(settings, url)
    if scheme not in _SCHEMES:
        raise BindingError("cloneUrl", "must be an https, ssh or git URL (or user@host:path)")
    if scheme == "file":
        if not settings.allow_local_repos:
            raise BindingError("cloneUrl", "file:// URLs are not allowed on this server")
        if len(url) <= len("file://") or url[len("file://")] != "/":
            raise BindingError("cloneUrl", "a file:// URL must name an absolute path")
        return url
    parts = _split(url)
    if scheme == "http" and not (settings.allow_local_repos or _same_origin(settings, parts)):
        raise BindingError("cloneUrl", "use https:// (plain http is allowed for no other forge)")
    if parts.password is not None or (parts.username is not None and scheme != "ssh"):
        raise BindingError("cloneUrl", f"must not hold credentials: {CREDENTIALS_HINT}")
    host = _host_of(parts)
    if not host or not _HOST.fullmatch(host):
        raise BindingError("cloneUrl", "has no valid host name")
    if parts.username is not None and parts.username.startswith("-"):
        raise BindingError("cloneUrl", "has an invalid user name")
    if len(parts.path.strip("/")) == 0:
        raise BindingError("cloneUrl", "names no repository")
    return url


def _check_scp_or_path(settings: Settings, url: str) -> str:
    if url.startswith("/"):
        if not settings.allow_local_repos:
            raise BindingError("cloneUrl", "local paths are not allowed on this server")
        return url
    match = _SCP.fullmatch(url)
    if match is None:
        if "@" in url and ":" in url.split("@", 1)[0]:
            raise BindingError("cloneUrl", f"must not hold credentials: {CREDENTIALS_HINT}")
        raise BindingError("cloneUrl", "must be an https, ssh or git URL (or user@host:path)")
    if not _HOST.fullmatch(match["host"]) or match["path"].startswith("-"):
        raise BindingError("cloneUrl", "has no valid host name or path")
    return url


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number)
    except ValueError as err:
        raise BindingError("cloneUrl", f"is not a valid URL: {err}") from None
    return parts


def _host_of(parts: SplitResult) -> str:
    netloc = parts.netloc.rpartition("@")[2]
    if netloc.startswith("["):
        return netloc[: netloc.find("]") + 1]
    return netloc.partition(":")[0]


def _same_origin(settings: Settings, parts: SplitResult) -> bool:
    forge = urlsplit(settings.forge_base_url)
    try:
        return (parts.scheme.lower(), parts.hostname, parts.port) == (
            forge.scheme.lower(),
            forge.hostname,
            forge.port,
        )
    except ValueError:
        return False


def token_applies(settings: Settings, url: str) -> bool:
    """Whether a forge token may be sent with ``url``: only to the configured forge itself,
    over HTTP(S). A token is never sent to a host the caller chose (the operator's token
    would leak to any server a session names)."""
    parts = urlsplit(url)
    return parts.scheme.lower() in ("https", "http") and _same_origin(settings, parts)


def owner_and_name(url: str) -> tuple[str, str] | None:
    """``https://github.com/o/r.git`` → ``("o", "r")``: the last two parts of the path, or
    None when the path has fewer."""
    if "://" in url:
        path = urlsplit(url).path
    elif url.startswith("/"):
        path = url
    else:
        path = url.partition(":")[2]
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) < 2:
        return None
    owner, name = parts[-2], parts[-1].removesuffix(".git")
    if not (_NAME.fullmatch(owner) and _NAME.fullmatch(name)):
        return None
    return owner, name


def _check_name(field: str, value: str) -> str:
    if not _NAME.fullmatch(value) or value in (".", ".."):
        raise BindingError(field, "use 1-100 of A-Z a-z 0-9 _ . - (not starting with . or -)")
    return value


def forge_url(settings: Settings, owner: str, name: str) -> str:
    """The clone URL of ``owner/name`` on the configured forge."""
    return f"{settings.forge_base_url.rstrip('/')}/{owner}/{name}.git"


def new_branch_name() -> str:
    """A fresh branch for ``isNewBranch``: ``agent/<8 hex>``."""
    return f"{NEW_BRANCH_PREFIX}{secrets.token_hex(4)}"
