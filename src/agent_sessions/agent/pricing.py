"""What a run cost: the operator's price table first, else the prices pydantic-ai ships.

A run is priced once, when it finishes, and the cost is stored with it: a later change of price
applies to later runs, and the past keeps the prices it was run at (what was billed then).
pydantic-ai prices each model response as it arrives with ``genai-prices`` (per request, so a
provider's long-context tier applies to the requests that crossed it) and sums the costs into
the run's usage; a model it does not know leaves that cost ``None``. ``MODEL_PRICES`` overrides
it for the models it lists (a model served under another name, a negotiated price, 0 for a
free local one), at a flat rate per million tokens.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic_ai.usage import RunUsage

from agent_sessions.settings import ModelPrice, Settings

NANO = Decimal(10) ** 9
"""Costs are stored as integers in billionths of a dollar: sums are exact in any database."""

_MILLION = Decimal(10) ** 6


def cost_of(settings: Settings, model_id: str, usage: RunUsage) -> Decimal | None:
    """The cost in USD of ``usage`` on ``model_id``; None when the model has no price (and
    something was used: nothing costs nothing, priced or not)."""
    price = settings.model_prices.get(model_id)
    if price is not None:
        return priced(price, usage)
    if usage.cost is None and not (usage.input_tokens or usage.output_tokens):
        return Decimal(0)
    return usage.cost


def priced(price: ModelPrice, usage: RunUsage) -> Decimal:
    """Flat per-million-token prices applied to the usage (``input_tokens`` includes the
    cached ones; each cached kind is priced at its own rate where one is given)."""
    cached_read = usage.cache_read_tokens
    cached_write = usage.cache_write_tokens
    fresh = max(0, usage.input_tokens - cached_read - cached_write)

    def rate(value: float | None) -> Decimal:
        return Decimal(str(price.input if value is None else value))

    total = (
        fresh * rate(price.input)
        + cached_read * rate(price.cached_input)
        + cached_write * rate(price.cache_write)
        + usage.output_tokens * rate(price.output)
    )
    return total / _MILLION


def to_nano(cost: Decimal | None) -> int | None:
    return None if cost is None else int((cost * NANO).to_integral_value())


def from_nano(nano: int | None) -> float | None:
    """Stored billionths → dollars for the wire (a float: JSON numbers; 9 decimals suffice)."""
    return None if nano is None else float(Decimal(nano) / NANO)
