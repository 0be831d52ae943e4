"""Actions on a customer's page (``/customers/<id>``) that change data:
merging another customer into this one; and the identities shown there.

Why a page action next to ``POST /api/v1/customers/<id>/merge``: duplicates
are usually found by a person looking at a customer, not by a system. Who:
admin and the marketing roles (:data:`web.api_customers.MERGE_ROLES` without
the integration role: a person signs in). CSRF-protected like every form;
the merge is audited with the signed-in user as the actor.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, g, redirect, request, url_for

from engine.customers_merge import MergeError, merge_customers
from engine.storage.database import transaction

from . import services
from .auth import login_required
from .i18n import t

bp = Blueprint("customer_actions", __name__)

#: Roles that may merge customers on the page (admin always may).
PAGE_MERGE_ROLES = ("marketing", "marketing_manager")


def can_merge() -> bool:
    user = g.get("user")
    return user is not None and user.has_any(PAGE_MERGE_ROLES)


def customer_identities(customer_id: int) -> list[tuple[str, str]]:
    """The identities of a customer kept outside its columns (member number,
    WeCom ids, aliases left by merges), for the profile on its page."""
    from engine.storage.identity_repo import identities_of

    with services().session_factory() as session:
        return identities_of(session, customer_id)


@bp.app_context_processor
def _helpers() -> dict[str, Any]:
    return {"can_merge_customers": can_merge, "customer_identities": customer_identities}


@bp.post("/customers/<int:customer_id>/merge")
@login_required
def merge(customer_id: int) -> Any:
    if not can_merge():
        abort(403)
    back = redirect(url_for("customers.detail", customer_id=customer_id) + "#merge")
    raw = (request.form.get("from_id") or "").strip()
    if not raw.isdigit() or len(raw) > 12 or int(raw) < 1:
        flash(t("merge_bad_id"), "error")
        return back
    if request.form.get("confirm") != "1":
        flash(t("merge_need_confirm"), "error")
        return back
    other = int(raw)
    svc = services()
    try:
        with transaction(svc.session_factory) as session:
            merge_customers(session, customer_id, other, now=svc.now(), actor=g.user.username)
    except MergeError as exc:
        if exc.code == "not_found":
            if exc.customer_id == customer_id:
                abort(404)
            flash(t("merge_not_found", id=other), "error")
        elif exc.code == "conflict":
            flash(t("merge_conflict", detail=str(exc)), "error")
        else:
            flash(t("merge_same"), "error")
        return back
    flash(t("merge_done", loser=other, survivor=customer_id), "ok")
    return back


__all__ = ["PAGE_MERGE_ROLES", "bp", "can_merge"]
