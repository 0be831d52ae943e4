"""Who sees which customers, and how much of their contact data (issue 16).

Why: the customer pages, message details, rule previews and exports showed
full phones and e-mails to every role that could open them, and a store or
account manager could page through every customer (about 5,000 phone numbers
a minute). Three rules, decided here once for the pages, the API and exports:

- **Masked by default.** Phones and e-mails are shown as ``138****1234`` and
  ``z***@example.com`` (:func:`mask`).
- **Unmasking is a permission** (``permissions: [unmask_personal_data]`` on a
  role in ``config/roles.yaml``; admins always hold it), asked for per view
  (``?unmask=1``) and audited by the caller (action ``personal_data.unmasked``).
- **Scoped customers.** Admins and the marketing roles see every customer;
  a store manager only the customers of their store (``attrs.store`` equals
  the user's store), an account manager only their accounts
  (``customers.account_manager_id``). A user holding both sees both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["UNMASK", "UNMASKED_ACTION", "UNSCOPED_ROLES", "CustomerScope", "mask", "may_unmask", "scope_for"]

#: The permission that shows full phones and e-mails.
UNMASK = "unmask_personal_data"
#: The audit action of one unmasked view.
UNMASKED_ACTION = "personal_data.unmasked"
#: Roles that see every customer (admin always does).
UNSCOPED_ROLES = ("marketing", "marketing_manager", "marketing_director")
STORE_ROLE = "store_manager"
ACCOUNT_ROLE = "account_manager"


def mask(value: str | None) -> str:
    """A phone or e-mail as a list shows it: ``138****1234``, ``z***@example.com``."""
    text = str(value or "")
    if "@" in text:
        name, _, domain = text.partition("@")
        return f"{name[:1]}***@{domain}"
    if len(text) >= 7 and text.lstrip("+").isdigit():
        return f"{text[:-8]}****{text[-4:]}" if len(text) > 8 else f"{text[:3]}****"
    return text[:2] + "***" if len(text) > 4 else text


def may_unmask(user: Any, roles: Mapping[str, Any]) -> bool:
    """Admin, or a holder of a role whose published definition lists ``unmask_personal_data``."""
    if user is None:
        return False
    if user.is_admin:
        return True
    return any(UNMASK in getattr(roles.get(r), "permissions", ()) for r in user.roles)


@dataclass(frozen=True)
class CustomerScope:
    """Which customers a user may open. ``everyone`` wins; otherwise the
    customers of ``store`` and those managed by ``account_manager_id``
    (either may be None; both None means nobody)."""

    everyone: bool = False
    store: str | None = None
    account_manager_id: int | None = None

    def admits(self, customer: Mapping[str, Any]) -> bool:
        """The same test as the SQL of ``customers_view_repo.scope_where``, for one loaded customer."""
        if self.everyone:
            return True
        attrs = customer.get("attrs")
        store = attrs.get("store") if isinstance(attrs, Mapping) else None
        if self.store is not None and store == self.store:
            return True
        return self.account_manager_id is not None and customer.get("account_manager_id") == self.account_manager_id


def scope_for(user: Any, *, store: str | None) -> CustomerScope:
    """The customers ``user`` (a Principal; ``store`` is the user's store) may open."""
    if user.is_admin or not user.roles.isdisjoint(UNSCOPED_ROLES):
        return CustomerScope(everyone=True)
    return CustomerScope(store=store if STORE_ROLE in user.roles and store else None,
                         account_manager_id=user.id if ACCOUNT_ROLE in user.roles else None)
