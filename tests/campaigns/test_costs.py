"""Message prices (engine/campaigns/costs.py): SMS per 70-character segment
(67 when split, the signature counted), e-mail per thousand, WeCom free;
the prices come from the shipped connector definitions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.campaigns.costs import MessagePrice, message_costs, prices_of, sms_segments
from engine.definitions.loader import load_paths
from engine.library import library_paths


@pytest.mark.parametrize(("length", "segments"), [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)])
def test_sms_segments(length: int, segments: int) -> None:
    assert sms_segments(length) == segments


def test_prices_of_the_shipped_connectors() -> None:
    defs = load_paths(library_paths()).raise_for_errors()
    prices, defaults = prices_of(defs.connectors)
    assert prices["sms_aliyun"] == MessagePrice(per_segment=Decimal("0.045"), signature=len("【促销通】"))
    assert prices["email_smtp"].per_thousand == Decimal("1.5")
    assert prices["wecom_customer"].per_message == Decimal(0)
    assert defaults["sms"] is prices["sms_aliyun"]
    groups = [("sms_aliyun", "sms", 65, 100),    # 65 + 5 = 70: one segment each
              ("sms_aliyun", "sms", 66, 10),     # 71: two segments each
              (None, "sms", 10, 1),              # no connector recorded: the channel's default
              ("email_smtp", "email", 900, 2500),
              ("wecom_customer", "wecom", 50, 40),
              ("unknown", "webhook", 5, 3)]      # no price: no cost
    assert message_costs(groups, prices, defaults) == {
        "messages_sms": Decimal("5.45"),   # (100 + 20 + 1) × 0.045 = 5.445 → 5.45 (half up)
        "messages_email": Decimal("3.75"),  # 2500 × 1.5 / 1000
    }
