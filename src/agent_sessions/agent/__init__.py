"""Agent turns: a durable pydantic-ai agent whose tools run in the session's sandbox
(architecture.md, Agent turns).

``turn`` is the DBOS workflow; ``service`` is what the API calls; ``tools``, ``stream``,
``models`` and ``prompt`` are the parts of a turn.
"""
