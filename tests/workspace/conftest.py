"""Workspace tests run the real app, DBOS and bubblewrap sandboxes (the ``agents`` fixture of
the agent tests, with the scripted stand-in model), against real git remotes served over
loopback (``tests/support/git_server.py``)."""

from __future__ import annotations

from tests.agent.conftest import agents, backend, model_server, sandbox_data_dir

__all__ = ["agents", "backend", "model_server", "sandbox_data_dir"]
