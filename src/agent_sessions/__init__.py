"""Agent Sessions: LLM coding agents in hibernating sandboxes, behind the Recoup Sessions API.

Layers import one way: ``api → lifecycle/agent → sandbox/workspace → store``.
"""

__version__ = "0.1.0"
