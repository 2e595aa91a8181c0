"""Who is calling: API keys and Bearer JWTs mapped to an account id."""

from agent_sessions.auth.authenticate import Authenticator
from agent_sessions.auth.keys import KEY_PREFIX, display_prefix, generate_key, hash_key
from agent_sessions.auth.tokens import TokenVerifier

__all__ = [
    "KEY_PREFIX",
    "Authenticator",
    "TokenVerifier",
    "display_prefix",
    "generate_key",
    "hash_key",
]
