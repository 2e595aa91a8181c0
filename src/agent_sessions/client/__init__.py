"""A terminal client for the HTTP API (``agent-sessions chat``).

It only speaks HTTP, so it works against any running server, local or remote, exactly as a
browser client would: ``http`` holds the API calls and the resumable SSE reader, ``render``
turns UI message stream chunks into terminal output, ``repl`` is the prompt loop.
"""
