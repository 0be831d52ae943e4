"""The web side of :mod:`engine.personal_data` (issue 16): the signed-in
user's customer scope, whether a view asked for full contact data
(``?unmask=1``) and may have it, and the audit entry of every unmasked view.

Shared by the customer pages, the message page and API, and the records
CSV export, so a page and its API answer the same for the same role.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import g, request

from engine.audit_log import audit_alone
from engine.personal_data import UNMASKED_ACTION, CustomerScope, may_unmask, scope_for
from engine.storage import accounts_repo

from . import services

__all__ = ["NotPermitted", "customer_scope", "may_unmask_here", "show_full", "unmask_asked"]


class NotPermitted(PermissionError):
    """Full personal data was asked for by a user without the permission."""


def customer_scope(user: Any | None = None) -> CustomerScope:
    """The customers the user may open (store managers their store's,
    account managers their accounts, the marketing roles and admins all)."""
    user = user if user is not None else g.user
    scope = scope_for(user, store=None)
    if scope.everyone or "store_manager" not in user.roles:
        return scope
    with services().session_factory() as session:
        store = accounts_repo.store_of(session, user.id)
    return scope_for(user, store=store)


def may_unmask_here(user: Any | None = None) -> bool:
    """May the user (default: the signed-in one) see full phones and e-mails?"""
    return may_unmask(user if user is not None else g.get("user"), services().registry.current().roles)


def unmask_asked() -> bool:
    """Did this request ask for full personal data (``?unmask=1``)?"""
    return str(request.args.get("unmask") or "").lower() in ("1", "true", "yes")


def show_full(entity_type: str, entity_id: str | int, fields: Iterable[str], *, user: Any | None = None) -> bool:
    """True when the request asked for full personal data and may have it;
    the view is then audited (who, what, which fields) before anything is
    shown. False when it did not ask.

    Raises:
        NotPermitted: it asked without the ``unmask_personal_data`` permission.
    """
    if not unmask_asked():
        return False
    user = user if user is not None else g.get("user")
    if not may_unmask_here(user):
        raise NotPermitted(UNMASKED_ACTION)
    svc = services()
    audit_alone(svc.session_factory, now=svc.now(), actor=user.username, action=UNMASKED_ACTION,
                entity_type=entity_type, entity_id=entity_id,
                diff={"fields": sorted(set(fields)), "path": request.path})
    return True
