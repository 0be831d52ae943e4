"""The customer field catalog: what audience conditions may test.

Pure data, so the definition loader can check audiences without SQLAlchemy;
``engine/storage/condition_sql.py`` maps each name to a column.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .kinds import FieldKind

#: Channels with a consent flag; ``consent.<channel>`` is a bool field.
CONSENT_CHANNELS: tuple[str, ...] = ("sms", "email", "wecom")

_T, _N, _D, _DT = FieldKind.TEXT, FieldKind.NUMBER, FieldKind.DATE, FieldKind.DATETIME

CUSTOMER_FIELDS: Mapping[str, FieldKind] = MappingProxyType(
    {
        "name": _T,
        "phone": _T,
        "email": _T,
        "gender": _T,
        "city": _T,
        "level": _T,
        "birthday": _D,
        "contract_end": _D,
        "registered_at": _DT,
        "last_purchase_at": _DT,
        "order_count": _N,
        "total_spent": _N,
        "rfm_recency_days": _N,
        "rfm_r": _N,
        "rfm_f": _N,
        "rfm_m": _N,
        "rfm_segment": _T,
        "account_manager_id": _N,
        # Loyalty (issue 13): the points balance, the day the oldest open points lapse, the tier level key.
        "points": _N,
        "points_expire_on": _D,
        "tier": _T,
        "tags": FieldKind.LIST,
        **{f"consent.{channel}": FieldKind.BOOL for channel in CONSENT_CHANNELS},
    }
)

#: A customer without a consent row has not consented: the value is false, not missing.
CUSTOMER_DEFAULTS: Mapping[str, object] = MappingProxyType(
    {f"consent.{channel}": False for channel in CONSENT_CHANNELS}
)
