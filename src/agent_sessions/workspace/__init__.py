"""The agent's work leaving the sandbox: repositories, diff, files, git, pull requests, skills.

Used by the API routes, the lifecycle and the agent's tools; uses the sandbox providers'
interface only, so it works alike on local and Vercel sandboxes (ADR 13). Git that touches the
workspace runs inside the sandbox; git that talks to the network runs on the host, where the
forge token is.

``credentials`` per-account forge tokens, encrypted at rest; the operator's as fallback
``files``       the tree (one ``find``), a file's content whole or streamed, uploads
``archive``     the workspace as a streamed ``.tar.gz`` or ``.zip``
``forge``       the pull-request interface and the mapping of a forge's refusals
``github``      that interface on GitHub's REST API (githubkit)
``pulls``       a session's pull request: open (or reuse), read, merge, close
``textgen``     short texts (a pull request's title and body) by the session's chat model
``git``         status, commit, discard: git run inside the sandbox
``commit_message``  a commit line from the chat's model, or a plain fallback
``repo``        repository binding: URL and branch rules, owner/name, new-branch names (pure)
``remote``      clone and push against the forge, on the host, with the token
``diff``        the workspace's diff against its base, in one sandbox exec
``cached_diff`` the diff kept in the database, refreshed after turns and before hibernation
"""
