"""The agent's work leaving the sandbox: repositories, diff, files, git, pull requests, skills.

Used by the API routes and the agent's tools; uses the sandbox providers' interface only, so it
works alike on local and Vercel sandboxes (ADR 13). Git that touches the workspace runs inside
the sandbox; git that talks to the network runs on the host, where the forge token is.

``live``        the session's sandbox for an API call (restored if hibernated)
``credentials`` per-account forge tokens, encrypted at rest; the operator's as fallback
``diff``        the workspace's diff against its base, in one sandbox exec
``cached_diff`` the diff kept in the database, refreshed after turns and before hibernation
"""
