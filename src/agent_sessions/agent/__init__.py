"""Agent turns: a durable pydantic-ai agent whose tools run in the session's sandbox (DESIGN §6).

``turn`` is the DBOS workflow; ``service`` is what the API calls; ``tools``, ``stream``,
``models`` and ``prompt`` are the parts of a turn.
"""
