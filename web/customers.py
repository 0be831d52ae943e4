"""The customer pages (客户列表 / 客户详情): ``/customers`` and ``/customers/<id>``.

Why: staff messages (the renewal reminder to account managers, among others)
link to ``/customers/<id>``; whoever follows the link needs the customer's
profile, consent, orders, coupons, journeys, messages and feedback on one page.

Who: admin, the marketing roles, account managers and store managers, all
read-only (nothing here writes). Others get 403, an unknown customer 404.

The list searches name, phone, e-mail and external id (prefix, or exact with
``exact=1``), filters by tag and by published segment (compiled by the same
code as rule audiences), and pages in SQL (:mod:`engine.storage.customers_view_repo`):
there may be a million customers. Phones and e-mails are masked in the list
and on the detail page (issue 16); a user whose role has the
``unmask_personal_data`` permission may show them in full on the detail page
(``?unmask=1``), and every such view is audited. Store managers see only
their store's customers and account managers only their accounts
(:mod:`web.personal_data`); another customer is a 404, as if it did not exist.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, g, render_template, request

from engine.conditions.customer_fields import CONSENT_CHANNELS
from engine.conditions.kinds import ConditionError
from engine.storage import customers_view_repo as repo

from . import services
from .auth import login_required
from .i18n import label, t
from .messages import MESSAGE_ROLES, STATUSES, mask
from .personal_data import NotPermitted, customer_scope, may_unmask_here, show_full

bp = Blueprint("customers", __name__)

#: Roles that may read customers (admin always may).
CUSTOMER_ROLES = ("marketing", "marketing_manager", "marketing_director", "account_manager", "store_manager")
PAGE_SIZE = 50
#: Rows per section on the detail page.
SECTION_LIMIT = 20
MAX_QUERY = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _allowed() -> None:
    user = g.get("user")
    if user is None or not user.has_any(CUSTOMER_ROLES):
        abort(403)


def _text_arg(name: str, limit: int) -> str:
    """A query argument cleaned for SQL: control characters (PostgreSQL
    refuses NUL in text) removed, trimmed, cut to ``limit`` characters."""
    return _CONTROL.sub("", request.args.get(name, ""))[:limit].strip()


def _page_arg() -> int:
    """The page asked for; anything that is not a positive number is page 1
    (the repository clamps large pages to the last one)."""
    try:
        return max(1, int(request.args.get("page", "1")))
    except ValueError:
        return 1


def _segments() -> dict[str, Any]:
    return {k: s.condition for k, s in services().registry.current().segments.items()}


@bp.route("/customers")
@login_required
def index() -> Any:
    _allowed()
    svc = services()
    definitions = svc.registry.current()
    by = request.args.get("by") or None
    flt = repo.CustomerFilter(q=_text_arg("q", MAX_QUERY), by=by if by in repo.SEARCH_FIELDS else None,
                              exact=request.args.get("exact") == "1", tag=_text_arg("tag", 64) or None,
                              segment=_text_arg("segment", 128) or None)
    with svc.session_factory() as session:
        try:
            found = repo.list_customers(session, flt, page=_page_arg(), per_page=PAGE_SIZE, now=_business_now(svc),
                                        segments=_segments(), scope=customer_scope())
        except KeyError:
            abort(400, t("cust_unknown_segment", segment=flt.segment))
        except ConditionError as exc:
            abort(400, str(exc))
        tags = repo.tag_choices(session)
    segments = sorted(((k, label(s, "title")) for k, s in definitions.segments.items()), key=lambda p: p[0])
    args = {k: v for k, v in (("q", flt.q), ("by", flt.by), ("exact", "1" if flt.exact else None),
                              ("tag", flt.tag), ("segment", flt.segment)) if v}
    return render_template("customers/index.html", found=found, flt=flt, args=args, tags=tags,
                           segments=segments, search_fields=repo.SEARCH_FIELDS, mask=mask)


@bp.route("/customers/<int:customer_id>")
@login_required
def detail(customer_id: int) -> Any:
    _allowed()
    svc = services()
    definitions = svc.registry.current()
    with svc.session_factory() as session:
        found = repo.customer_detail(session, customer_id, limit=SECTION_LIMIT, scope=customer_scope())
        if found is None:
            abort(404)
        in_segments = repo.segments_of(session, customer_id, now=_business_now(svc), segments=_segments())
    try:
        full = show_full("customer", customer_id, ("phone", "email"))
    except NotPermitted:
        abort(403, t("pii_no_permission"))
    if not full:
        found.customer["phone"] = mask(found.customer.get("phone")) if found.customer.get("phone") else None
        found.customer["email"] = mask(found.customer.get("email")) if found.customer.get("email") else None
    segment_titles = [(k, label(definitions.segments[k], "title")) for k in in_segments]
    rule_titles = {r: label(definitions.rules[r], "title") for r in {j["rule_id"] for j in found.journeys}
                   if r in definitions.rules}
    arm_titles = {(j["rule_id"], j["arm"]): _arm_title(definitions.rules.get(j["rule_id"]), j["arm"])
                  for j in found.journeys if j.get("arm")}
    return render_template("customers/detail.html", c=found.customer, d=found, channels=CONSENT_CHANNELS,
                           segments=segment_titles, rule_titles=rule_titles, arm_titles=arm_titles, limit=SECTION_LIMIT,
                           attrs=_attrs(found.customer.get("attrs")), points=_points(svc, customer_id),
                           can_open_messages=g.user.has_any(MESSAGE_ROLES), msg_statuses=STATUSES,
                           masked=not full, may_unmask=may_unmask_here(), mask=mask)


def _points(svc: Any, customer_id: int) -> dict[str, Any] | None:
    """The customer's points, tier title and one page of the ledger (``?points_page=``)
    for the page's loyalty section (:mod:`engine.loyalty.points`)."""
    from engine.loyalty.points import PointsService

    try:
        page = max(1, int(request.args.get("points_page", "1")))
    except ValueError:
        page = 1
    account = PointsService(svc.session_factory, tz=svc.tz).account(customer_id, now=svc.now(), page=page,
                                                                    per_page=SECTION_LIMIT)
    if account is None:
        return None
    spec = svc.registry.current().tier
    level = spec.level(account.tier) if spec is not None else None
    pages = max(1, -(-account.total // SECTION_LIMIT))
    return {"account": account, "tier_title": label(level, "title") if level is not None else account.tier,
            "page": min(page, pages), "pages": pages}


def _arm_title(rule: Any, key: str) -> str:
    """An experiment arm's title in the request's language (对照组 / Control group, a variant's title),
    else its key (a rule or arm no longer published)."""
    from engine.experiments import arm_spec

    arm = arm_spec(rule, key) if rule is not None else None
    return (label(arm, "title") or key) if arm is not None else key


def _attrs(raw: Any) -> list[tuple[str, str]]:
    """Custom attributes as (name, text) pairs; nested values as JSON text."""
    if not isinstance(raw, dict):
        return []
    out = []
    for key in sorted(raw, key=str):
        value = raw[key]
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        out.append((str(key), text))
    return out


__all__ = ["CUSTOMER_ROLES", "bp"]


def _business_now(svc: Any) -> datetime:
    """Now in the installation's time zone: segments with calendar order
    windows (``orders: {in: this_quarter, …}``) read their quarter there."""
    from engine.automation.timing import zone

    return svc.now().astimezone(zone(svc.tz))
