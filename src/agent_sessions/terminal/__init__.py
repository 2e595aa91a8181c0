"""The terminal client (``agent-sessions chat``).

It speaks HTTP through the client library (:mod:`agent_sessions.client`) only, so it works
against any running server, local or remote, exactly as any other client would: ``render``
turns the stream's chunks into terminal output, ``repl`` is the prompt loop.
"""
