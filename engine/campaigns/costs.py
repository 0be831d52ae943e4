"""What a campaign's messages cost, from the prices on connector definitions.

SMS is billed per segment and recipient: a message of up to 70 characters
(the 【signature】 included, as Aliyun and Tencent count) is one segment; a
longer one is split into segments of 67. E-mail is priced per thousand,
WeCom per message (0: free). The SQL hands over (connector, channel, body
length, count) groups, so this is arithmetic over a few hundred rows however
many messages there were.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from engine.definitions.specs import ConnectorSpec

__all__ = ["MessagePrice", "message_costs", "prices_of", "sms_segments"]

SINGLE_SEGMENT = 70
SPLIT_SEGMENT = 67
CENT = Decimal("0.01")


@dataclass(frozen=True)
class MessagePrice:
    """A connector's price: per SMS segment, per thousand, or per message;
    ``signature`` characters are added to each SMS's length."""

    per_segment: Decimal | None = None
    per_thousand: Decimal | None = None
    per_message: Decimal | None = None
    signature: int = 0


def sms_segments(length: int) -> int:
    """Billed segments of an SMS of ``length`` characters (signature included)."""
    if length <= SINGLE_SEGMENT:
        return 1
    return -(-length // SPLIT_SEGMENT)


def prices_of(connectors: Mapping[str, ConnectorSpec]) -> tuple[dict[str, MessagePrice], dict[str, MessagePrice]]:
    """Prices by connector id, and by channel for the channel's default
    connector (a message whose connector is not recorded)."""
    by_id: dict[str, MessagePrice] = {}
    by_channel: dict[str, MessagePrice] = {}
    for spec in connectors.values():
        sign = spec.settings.get("sign_name") if spec.channel == "sms" else None
        price = MessagePrice(spec.price_per_segment, spec.price_per_thousand, spec.price_per_message,
                             len(str(sign)) + 2 if sign else 0)
        by_id[spec.id] = price
        if spec.default or spec.channel not in by_channel:
            by_channel[spec.channel] = price
    return by_id, by_channel


def message_costs(groups: Iterable[tuple[str | None, str, int, int]], prices: Mapping[str, MessagePrice],
                  defaults: Mapping[str, MessagePrice]) -> dict[str, Decimal]:
    """Cost per ``messages_<channel>`` of (connector, channel, body length,
    count) groups of sent messages; channels that cost nothing are left out."""
    totals: dict[str, Decimal] = {}
    for connector, channel, length, count in groups:
        price = prices.get(connector or "") or defaults.get(channel)
        if price is None:
            continue
        if price.per_segment is not None:
            cost = price.per_segment * sms_segments(length + price.signature) * count
        elif price.per_thousand is not None:
            cost = price.per_thousand * count / 1000
        elif price.per_message is not None:
            cost = price.per_message * count
        else:
            continue
        key = f"messages_{channel}"
        totals[key] = totals.get(key, Decimal(0)) + cost
    return {k: v.quantize(CENT, rounding=ROUND_HALF_UP) for k, v in totals.items() if v}
