"""The relational schema, as SQLAlchemy 2 typed declarative models.

Conventions (shared with every caller):

* ``DateTime`` columns hold naive UTC; convert with ``engine.storage.times``.
  Nothing here has a clock-based default: the engine reads no wall clock, so
  callers pass ``now`` and every timestamp is reproducible under a fake clock.
* ``version`` columns on mutable rows are for optimistic locking.
* JSON is ``json`` on SQLite and ``jsonb`` on PostgreSQL (indexable, comparable).
* Constraint names follow ``NAMING_CONVENTION`` so Alembic migrations can refer
  to (and drop) them by a stable name on both backends.

The ``customers`` table is a fixed contract: the condition compiler
(``engine/storage/condition_sql.py``) addresses its columns by name and type.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# jsonb on PostgreSQL; plain JSON (text) on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")
# 64-bit ids for the high-volume tables; SQLite only auto-increments a column
# declared exactly INTEGER PRIMARY KEY (which is 64-bit there anyway).
BigId = BigInteger().with_variant(Integer(), "sqlite")
Money = Numeric(14, 2)


class Base(DeclarativeBase):
    """Declarative base whose metadata carries the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Every model here is mapped to one Table (no mapped joins or selects), so
    # Model.__table__ is typed as such: Core statements then type-check.
    __table__: ClassVar[Table]


# --- definitions -----------------------------------------------------------


class Definition(Base):
    """One published version of a form, workflow, rule, segment or template.

    Rows are never changed except ``is_latest``: running instances keep
    pointing at the version they started with. ``is_latest`` (unique per
    (kind, def_id) through a partial index) makes "current version" a lookup.
    """

    __tablename__ = "definitions"
    __table_args__ = (
        UniqueConstraint("kind", "def_id", "version"),
        Index(
            "ux_definitions_latest",
            "kind",
            "def_id",
            unique=True,
            sqlite_where=text("is_latest = 1"),
            postgresql_where=text("is_latest"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    def_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    is_latest: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    content_hash: Mapped[str] = mapped_column(String(64))
    body: Mapped[dict[str, Any]] = mapped_column(JSONType)
    source_file: Mapped[str | None] = mapped_column(String(512))
    published_at: Mapped[datetime] = mapped_column(DateTime())
    published_by: Mapped[str | None] = mapped_column(String(128))


# --- people ------------------------------------------------------------------


class User(Base):
    """A staff member, approver or manager who signs in or receives tasks."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(128))
    email: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(32))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    manager_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    locale: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime())
    # Migration 0014: the store this person works at (a customer's store is its
    # ``attrs.store``); role-addressed rule tasks go to the role's holders there.
    store: Mapped[str | None] = mapped_column(String(64), index=True)
    # Accounts hardening (migration 0017): the session cookie carries
    # ``session_version``; logout, password change and reset increment it.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime())


class LoginThrottle(Base):
    """Failed sign-ins per key (``account:<name>``, ``address:<ip>``) and the
    lock they earned; shared by every process (migration 0017)."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime())
    locked_until: Mapped[datetime | None] = mapped_column(DateTime())


class UserRole(Base):
    """A role held by a user; approval steps address people by role."""

    __tablename__ = "user_roles"
    __table_args__ = (Index("ix_user_roles_role_user", "role", "user_id"),)

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(64), primary_key=True)


class ApiToken(Base):
    """An API token; only its hash is stored, so a database leak leaks no tokens."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime())


# --- form records and approvals --------------------------------------------


class Record(Base):
    """A submitted form: the data plus the form version it was validated against."""

    __tablename__ = "records"
    __table_args__ = (
        Index("ix_records_form_created", "form_id", "created_at"),
        Index("ix_records_form_creator", "form_id", "created_by_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    form_id: Mapped[str] = mapped_column(String(128))
    form_version: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime())
    updated_at: Mapped[datetime] = mapped_column(DateTime())
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    status: Mapped[str] = mapped_column(String(32), default="submitted", server_default="submitted")
    # Who submitted, by name: also public submitters and system actors without a
    # users row (``created_by`` is the users.id when there is one). Migration 0002.
    created_by_name: Mapped[str | None] = mapped_column(String(128))


class RecordUniqueValue(Base):
    """One value of a ``unique: true`` field, claimed by a record (migration 0002).

    The unique key makes "same value in another record of the form" race-safe:
    two concurrent submissions cannot both insert it. ``value`` is the stored
    value's text, or ``sha256:<hex>`` when longer than 200 characters.
    """

    __tablename__ = "record_unique_values"
    __table_args__ = (UniqueConstraint("form_id", "field", "value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    form_id: Mapped[str] = mapped_column(String(128))
    field: Mapped[str] = mapped_column(String(128))
    value: Mapped[str] = mapped_column(String(255))
    record_id: Mapped[int] = mapped_column(
        ForeignKey("records.id", ondelete="CASCADE"), index=True
    )


class WorkflowInstance(Base):
    """A running approval flow, pinned to the workflow version it started on."""

    __tablename__ = "workflow_instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(128))
    workflow_version: Mapped[int] = mapped_column(Integer)
    record_id: Mapped[int] = mapped_column(ForeignKey("records.id", ondelete="CASCADE"), index=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(32))  # not indexed (migration 0009): no query filters on it
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    started_at: Mapped[datetime] = mapped_column(DateTime())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime())


class Task(Base):
    """One approver's (or one role's) piece of work in an instance: an inbox row."""

    __tablename__ = "tasks"
    __table_args__ = (
        # Migration 0009 dropped ix_tasks_role_status, ix_tasks_assignee_status,
        # ix_tasks_status_due and ix_tasks_instance_id: no query used them,
        # every commit wrote them.
        # Migration 0003: inbox by user name, the tick's due query, instance-local task numbers.
        Index("ix_tasks_assignee_name_status", "assignee_name", "status"),
        Index("ix_tasks_status_wake_at", "status", "wake_at"),
        UniqueConstraint("instance_id", "seq"),
        # Migration 0014: a journey's create_task writes its rows once.
        UniqueConstraint("journey_id", "step_id", "assignee_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # NULL for a rule task (``kind`` ``rule``, migration 0014).
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("workflow_instances.id", ondelete="CASCADE"))
    step_id: Mapped[str] = mapped_column(String(128))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    role: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="open", server_default="open")
    due_at: Mapped[datetime | None] = mapped_column(DateTime())
    acted_at: Mapped[datetime | None] = mapped_column(DateTime())
    action: Mapped[str | None] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(DateTime())
    # Migration 0003: the task's number inside its instance's state (the state
    # machine's id), the assignee by name, approval or cc, and when the tick
    # next has something to do for it (reminder, escalation).
    seq: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    assignee_name: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16), default="approval", server_default="approval")
    wake_at: Mapped[datetime | None] = mapped_column(DateTime())
    # Migration 0014: a rule's create_task (see engine/rule_tasks.py): what,
    # about whom, from where, how it ended and how long that took; ``detail``
    # holds the step's policy and the reminder state.
    title: Mapped[str | None] = mapped_column(String(255))
    customer_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    rule_id: Mapped[str | None] = mapped_column(String(128))
    journey_id: Mapped[int | None] = mapped_column(BigInteger)
    outcome: Mapped[str | None] = mapped_column(String(32))
    response_seconds: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


# --- customers (fixed contract) ---------------------------------------------


class Customer(Base):
    """A customer, audience of rules. FIXED CONTRACT: the condition compiler relies on it."""

    __tablename__ = "customers"
    # Quintile boundaries of frequency and monetary scores (migration 0012); recency walks ix_..._last_purchase_at.
    __table_args__ = (Index("ix_customers_rfm_f", "order_count", "id"),
                      Index("ix_customers_rfm_m", "total_spent", "id", "order_count"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    email: Mapped[str | None] = mapped_column(String(255), index=True)
    gender: Mapped[str | None] = mapped_column(String(16))
    city: Mapped[str | None] = mapped_column(String(128))
    level: Mapped[str | None] = mapped_column(String(32))
    birthday: Mapped[date | None] = mapped_column(Date)
    registered_at: Mapped[datetime | None] = mapped_column(DateTime())
    last_purchase_at: Mapped[datetime | None] = mapped_column(DateTime(), index=True)
    order_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    total_spent: Mapped[Decimal] = mapped_column(
        Money, default=Decimal(0), server_default=text("0")
    )
    rfm_recency_days: Mapped[int | None] = mapped_column(Integer)
    rfm_r: Mapped[int | None] = mapped_column(Integer)
    rfm_f: Mapped[int | None] = mapped_column(Integer)
    rfm_m: Mapped[int | None] = mapped_column(Integer)
    rfm_segment: Mapped[str | None] = mapped_column(String(32))
    account_manager_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    contract_end: Mapped[date | None] = mapped_column(Date, index=True)
    timezone: Mapped[str | None] = mapped_column(String(64))
    attrs: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime())
    updated_at: Mapped[datetime] = mapped_column(DateTime())
    # Migration 0018: erased (PIPL, engine/customer_rights.py); no rule enters the customer again.
    erased_at: Mapped[datetime | None] = mapped_column(DateTime())
    # Migration 0021 (loyalty): the points balance and the day the oldest open lot lapses, kept by
    # engine/storage/points_repo.py (the ledger's one writer); the tier set by the tier evaluation.
    points: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    points_expire_on: Mapped[date | None] = mapped_column(Date, index=True)
    tier: Mapped[str | None] = mapped_column(String(32), index=True)


class CustomerTag(Base):
    """A tag on a customer; (tag, customer_id) index serves ``tags: {contains: x}``."""

    __tablename__ = "customer_tags"
    __table_args__ = (Index("ix_customer_tags_tag_customer", "tag", "customer_id"),)

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)


class CustomerIdentity(Base):
    """An identity a customer is found by (migration 0011): ``member_no`` and
    ``wecom`` (WeCom external userid), and merged-away phones, e-mails and
    external ids. ``(kind, value)`` is unique: one identity, one customer."""

    __tablename__ = "customer_identities"
    __table_args__ = (UniqueConstraint("kind", "value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(255))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime())


class Consent(Base):
    """Whether a customer agreed to be contacted on a channel (one row per channel)."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("customer_id", "channel"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(32))
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime())


#: Order statuses. ``paid`` and ``partially_refunded`` orders count as purchases
#: (RFM, order windows) with their ``net_amount``; ``refunded`` and
#: ``cancelled`` ones do not.
ORDER_STATUSES = ("paid", "partially_refunded", "refunded", "cancelled")
COUNTED_ORDER_STATUSES = ("paid", "partially_refunded")


def _default_net_amount(context: Any) -> Any:
    """A writer that gives no ``net_amount`` (the customer import, the demo
    seed) stores the amount for a counted order and 0 otherwise."""
    params = context.get_current_parameters()
    counted = params.get("status", "paid") in COUNTED_ORDER_STATUSES
    return params.get("amount") if counted else 0


class Order(Base):
    """A purchase; source of revenue, repurchase and RFM figures (migration 0012
    for source, lines, refunds and net amount)."""

    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_customer_placed", "customer_id", "placed_at"),
                      UniqueConstraint("source", "external_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(64), default="import", server_default="import")
    external_id: Mapped[str | None] = mapped_column(String(128))
    amount: Mapped[Decimal] = mapped_column(Money)
    discount: Mapped[Decimal] = mapped_column(Money, default=0, server_default="0")
    net_amount: Mapped[Decimal] = mapped_column(Money, default=_default_net_amount, server_default="0")
    refunded_amount: Mapped[Decimal] = mapped_column(Money, default=0, server_default="0")
    lines: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    placed_at: Mapped[datetime] = mapped_column(DateTime(), index=True)
    channel: Mapped[str | None] = mapped_column(String(32))
    store: Mapped[str | None] = mapped_column(String(64))
    coupon_code: Mapped[str | None] = mapped_column(String(64))
    campaign: Mapped[str | None] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(32), default="paid", server_default="paid")
    body_hash: Mapped[str | None] = mapped_column(String(64))
    refunds: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime())
    updated_at: Mapped[datetime | None] = mapped_column(DateTime())


# --- automation ----------------------------------------------------------------


class Journey(Base):
    """A subject's pass through a rule; the unique key makes rule entry idempotent.

    ``period_key`` names the ``once_per`` window (or the event/date occurrence),
    so re-running a rule inserts nothing new for a subject already inside it.
    ``subject_id`` is an integer so set-based entry can select ``customers.id``
    straight into it on both backends.
    """

    __tablename__ = "journeys"
    __table_args__ = (
        UniqueConstraint("rule_id", "subject_type", "subject_id", "period_key"),
        Index("ix_journeys_status_due", "status", "due_at"),
        Index("ix_journeys_subject", "subject_type", "subject_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(128))
    rule_version: Mapped[int] = mapped_column(Integer)
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[int] = mapped_column(BigInteger)
    period_key: Mapped[str] = mapped_column(String(64))
    step_index: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    step_id: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(32), default="active", server_default="active")
    due_at: Mapped[datetime | None] = mapped_column(DateTime(), index=True)
    entered_at: Mapped[datetime] = mapped_column(DateTime())
    state: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    #: The experiment arm (migration 0019): NULL when the rule has no experiment,
    #: ``"control"`` for the holdout, otherwise the variant's key. Campaign
    #: evaluation compares arms by this column.
    arm: Mapped[str | None] = mapped_column(String(64))


#: Partial indexes over redeemed coupons (migration 0013): an order's coupons, and the
#: per-store, per-device and per-phone counts of the redemption limits.
REDEEMED_INDEXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("redeemed_order", ("redeemed_order",)),
    ("redeemed_store", ("pool_id", "redeemed_store", "redeemed_at")),
    ("redeemed_device", ("pool_id", "redeemed_device", "redeemed_at")),
    ("redeemed_phone", ("pool_id", "redeemed_phone")),
)


class Coupon(Base):
    """An issued coupon. Pools are definitions; this is the per-customer instance."""

    __tablename__ = "coupons"
    __table_args__ = (
        Index("ix_coupons_customer_pool", "customer_id", "pool_id"),
        Index("ix_coupons_pool_status", "pool_id", "status"),
        *(Index(f"ix_coupons_{name}", *cols, sqlite_where=text("redeemed_at IS NOT NULL"),
                postgresql_where=text("redeemed_at IS NOT NULL")) for name, cols in REDEEMED_INDEXES),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    pool_id: Mapped[str] = mapped_column(String(128))
    code: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    value: Mapped[Decimal] = mapped_column(Money)
    issued_at: Mapped[datetime] = mapped_column(DateTime())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime())
    redeemed_at: Mapped[datetime | None] = mapped_column(DateTime())
    # No foreign key (migration 0010): written only from journeys of the same transaction; journeys are never deleted.
    journey_id: Mapped[int | None] = mapped_column(BigId, index=True)
    status: Mapped[str] = mapped_column(String(32), default="issued", server_default="issued")
    # Redemption at a till (migration 0013): what the anti-abuse limits count. Partial
    # indexes (only redeemed rows) so issuing a million coupons pays nothing for them.
    redeemed_order: Mapped[str | None] = mapped_column(String(128))
    redeemed_amount: Mapped[Decimal | None] = mapped_column(Money)
    redeemed_store: Mapped[str | None] = mapped_column(String(64))
    redeemed_device: Mapped[str | None] = mapped_column(String(128))
    redeemed_phone: Mapped[str | None] = mapped_column(String(32))


class RedemptionAttempt(Base):
    """One attempt to redeem a coupon at a till or through the API (migration 0013),
    redeemed or refused, with the reason: the audit trail of 核销 and what a
    store's or device's abuse is read from."""

    __tablename__ = "redemption_attempts"
    # One index: a code's attempts (the till's history, an undo's idempotency). The limits
    # count redeemed coupons (their partial indexes), so a till's write touches no more.
    __table_args__ = (Index("ix_redemption_attempts_code", "code"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(64))
    coupon_id: Mapped[int | None] = mapped_column(BigInteger)
    pool_id: Mapped[str | None] = mapped_column(String(128))
    customer_id: Mapped[int | None] = mapped_column(Integer)
    phone: Mapped[str | None] = mapped_column(String(32))
    order_id: Mapped[str | None] = mapped_column(String(128))
    order_amount: Mapped[Decimal | None] = mapped_column(Money)
    store: Mapped[str | None] = mapped_column(String(64))
    device: Mapped[str | None] = mapped_column(String(128))
    actor: Mapped[str | None] = mapped_column(String(128))
    result: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime())


class OutboxMessage(Base):
    """A message to deliver, written in the transaction that decided to send it.

    ``idempotency_key`` makes re-deciding harmless; dispatchers claim rows by
    (status, next_attempt_at) with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_outbox_customer_channel_created", "customer_id", "channel", "created_at"),
        # Partial (migration 0010): a queued row has neither; their queries imply the predicates.
        Index("ix_outbox_connector_provider_id", "connector", "provider_id",
              sqlite_where=text("provider_id IS NOT NULL"), postgresql_where=text("provider_id IS NOT NULL")),
        Index("ix_outbox_recipient_claimed", "recipient", "claimed_at",
              sqlite_where=text("claimed_at IS NOT NULL"), postgresql_where=text("claimed_at IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    connector: Mapped[str | None] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str | None] = mapped_column(String(255))
    body: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    delivery_class: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime())
    provider_id: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)
    rule_id: Mapped[str | None] = mapped_column(String(128), index=True)
    # No foreign key nor index (migration 0010): see Coupon.journey_id; no query looks rows up by journey.
    journey_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime] = mapped_column(DateTime())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime())
    # Migration 0004: the customer a message is about (frequency caps count by
    # customer, channel and time) and the template it was rendered from.
    customer_id: Mapped[int | None] = mapped_column(BigInteger)
    template_id: Mapped[str | None] = mapped_column(String(128))
    # Migration 0007: what the provider later said (receipts, status queries):
    # ``delivery_status`` delivered | undelivered | failed | pending; and how
    # often an ``unknown`` row was looked up at the provider.
    delivery_status: Mapped[str | None] = mapped_column(String(32))
    delivery_code: Mapped[str | None] = mapped_column(String(64))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime())
    reconcile_checks: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    reconciled_at: Mapped[datetime | None] = mapped_column(DateTime())


class MessageAttempt(Base):
    """One send attempt of an outbox row and what came of it (append-only):
    the messages page shows a row's history, not only its last error."""

    __tablename__ = "message_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime())
    worker: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(32))
    provider_id: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)


class MessageReceipt(Base):
    """A delivery receipt as it arrived (callback or status query), unique per
    (connector, event key) so a provider's retried callback is applied once."""

    __tablename__ = "message_receipts"
    __table_args__ = (UniqueConstraint("connector", "event_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    connector: Mapped[str] = mapped_column(String(64))
    event_key: Mapped[str] = mapped_column(String(255))
    provider_id: Mapped[str | None] = mapped_column(String(255))
    message_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    status: Mapped[str | None] = mapped_column(String(32))
    code: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    received_at: Mapped[datetime] = mapped_column(DateTime())


class Event(Base):
    """A domain event, written in the same transaction as the change that caused it."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_processed_id", "processed_at", "id"),
        Index("ix_events_name_created", "name", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    subject_type: Mapped[str | None] = mapped_column(String(32))
    subject_id: Mapped[str | None] = mapped_column(String(128))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime())
    processed_at: Mapped[datetime | None] = mapped_column(DateTime())
    # Migration 0011: a client's idempotency key (custom events, callbacks); unique, so a repeat stores nothing.
    idempotency_key: Mapped[str | None] = mapped_column(String(255), index=True, unique=True)


class Feedback(Base):
    """A survey answer or reply from a customer, tied to a campaign for NPS."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    campaign: Mapped[str | None] = mapped_column(String(128), index=True)
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("outbox.id", ondelete="SET NULL"), index=True
    )
    score: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str] | None] = mapped_column(JSONType)
    source: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime())
    # Migration 0006: the inbound item's key (``survey:<campaign>:<customer>``,
    # ``<source>:<event id>``, ``wecom:<connector>:<MsgId>``), unique so a retried
    # callback or a re-polled page stores nothing twice; a hash of what was
    # received (a replay with another body is a conflict); the full answer.
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    body_hash: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class FeedbackCursor(Base):
    """Where a feedback pull connector stopped (migration 0006); written in the
    transaction that stores the pulled items, so a restart neither skips nor repeats."""

    __tablename__ = "feedback_cursors"

    source: Mapped[str] = mapped_column(String(128), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime())


class AuditEntry(Base):
    """Append-only audit trail; database triggers reject UPDATE and DELETE.

    The triggers live in the migration, so the guarantee holds for any client of
    the database, not only for this code. Write with ``audit.append_audit``.
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity_type", "entity_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(), index=True)
    actor: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(128))
    diff: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


# --- segment-change memory (migration 0008, issue 6) ------------------------------


class SegmentMemory(Base):
    """Who was in a ``segment_change`` rule's ``from`` and ``to`` segments at
    its last run (``side``; a ``seen`` row with customer 0 marks the first
    run), so the next run enters exactly the customers who moved."""

    __tablename__ = "segment_memory"

    rule_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    side: Mapped[str] = mapped_column(String(8), primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)


# --- automation runs (migration 0004, issue 6) -------------------------------------


class RuleRun(Base):
    """One run of a rule: a schedule or date occurrence, a manual run, or the
    journey steps one ``advance_due`` call moved for the rule, with its counters.

    ``(rule_id, kind, scheduled_for)`` is unique: a schedule occurrence is
    claimed by inserting its row (conflict-ignore), so a restarted or second
    scheduler never runs the same occurrence twice. ``scheduled_for`` is NULL
    for runs that are not occurrences (NULLs never conflict).
    """

    __tablename__ = "rule_runs"
    __table_args__ = (
        UniqueConstraint("rule_id", "kind", "scheduled_for"),
        Index("ix_rule_runs_rule_started", "rule_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(128))
    rule_version: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    scheduled_for: Mapped[datetime | None] = mapped_column(DateTime())
    started_at: Mapped[datetime] = mapped_column(DateTime())
    entered: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    advanced: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    sent: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    skipped_consent: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    skipped_cap: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    skipped_other: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    deferred_quiet: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    deferred_cap: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    exited: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    completed: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    errors: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


# --- issue 12, part 4: click tracking (migration 0015) ---------------------------------

class ClickLink(Base):
    """A URL of a delivered message, rewritten into ``/c/<token>`` by the
    dispatcher. ``(message_id, url)`` is unique so a retried delivery reuses
    its links; ``first_clicked_at`` is set once (the ``message.clicked``
    event is written with it)."""

    __tablename__ = "click_links"
    __table_args__ = (
        UniqueConstraint("message_id", "url"),
        Index("ix_click_links_customer_clicked", "customer_id", "first_clicked_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token: Mapped[str] = mapped_column(String(16), unique=True)
    # No foreign key: like Coupon.journey_id, the outbox is pruned independently.
    message_id: Mapped[int] = mapped_column(BigInteger)
    url: Mapped[str] = mapped_column(Text)
    customer_id: Mapped[int | None] = mapped_column(BigInteger)
    rule_id: Mapped[str | None] = mapped_column(String(128))
    template_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime())
    first_clicked_at: Mapped[datetime | None] = mapped_column(DateTime())


class LinkClick(Base):
    """One click on a :class:`ClickLink` (every click counts, repeats too)."""

    __tablename__ = "link_clicks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    link_id: Mapped[int] = mapped_column(BigId, ForeignKey("click_links.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime())
    user_agent: Mapped[str | None] = mapped_column(String(255))


# --- loyalty (migration 0021, issue 13) ------------------------------------------------


#: What a ledger row records. ``earn`` and a positive ``adjust`` are lots (they carry
#: ``remaining`` and ``expires_on``); ``spend``, ``expire``, ``reverse`` and a negative
#: ``adjust`` consume lots oldest first.
POINTS_KINDS = ("earn", "spend", "expire", "adjust", "reverse")
#: Where points come from: an order (the points policy), a rule step, the API, the expiry tick.
POINTS_SOURCES = ("order", "rule", "api", "expiry")


class PointsEntry(Base):
    """One movement of a customer's points. The balance is the sum of
    ``amount``; written only by ``engine/storage/points_repo.py``."""

    __tablename__ = "points_ledger"
    __table_args__ = (
        Index("ix_points_ledger_customer_id", "customer_id", "id"),
        Index("ix_points_ledger_source_ref", "source", "source_ref"),
        Index("ix_points_ledger_open_lots", "expires_on", "customer_id",
              sqlite_where=text("remaining > 0"), postgresql_where=text("remaining > 0")),
        Index("ix_points_ledger_customer_open", "customer_id", "expires_on", "remaining",
              sqlite_where=text("remaining > 0"), postgresql_where=text("remaining > 0")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    expires_on: Mapped[date | None] = mapped_column(Date)
    reason: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16))
    source_ref: Mapped[str | None] = mapped_column(String(128))
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime())
# --- issue 14: campaigns, their costs and KPI snapshots (migration 0022) ---------------


class Campaign(Base):
    """The unit a manager asks about: a promotion with dates, budget, channel,
    targets and the rules, coupon pools and forms whose effects count for it.

    Written from a ``campaign`` definition on publish (``source`` definition)
    or from an approved activity request (``source`` request, ``record_id``
    the request). ``ended_at`` is an explicit early end; the status (planned,
    running, ended) is derived from the dates and it, never stored."""

    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    title_en: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16))
    record_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    owner: Mapped[str | None] = mapped_column(String(128))
    channel: Mapped[str | None] = mapped_column(String(32))
    budget: Mapped[Decimal | None] = mapped_column(Money)
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime())
    attribution_days: Mapped[int] = mapped_column(Integer, default=7, server_default=text("7"))
    targets: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    materials: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    materials_cost: Mapped[Decimal] = mapped_column(Money, default=Decimal(0), server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(DateTime())
    updated_at: Mapped[datetime] = mapped_column(DateTime())


class CampaignLink(Base):
    """A rule, coupon pool or form of a campaign (``kind`` rule | pool | form):
    the KPI statements join on it, so it is a table, not JSON."""

    __tablename__ = "campaign_links"
    __table_args__ = (Index("ix_campaign_links_kind_ref", "kind", "ref"),)

    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    ref: Mapped[str] = mapped_column(String(128), primary_key=True)


class CampaignCost(Base):
    """A cost entered by hand (labour, media, other) for a campaign."""

    __tablename__ = "campaign_costs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    category: Mapped[str] = mapped_column(String(32))
    amount: Mapped[Decimal] = mapped_column(Money)
    incurred_on: Mapped[date] = mapped_column(Date)
    note: Mapped[str | None] = mapped_column(String(255))
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime())


#: Migration 0022: an order's coupon code, for attribution by code (only orders that carry one).
Index("ix_orders_coupon_code", Order.coupon_code, sqlite_where=text("coupon_code IS NOT NULL"),
      postgresql_where=text("coupon_code IS NOT NULL"))


class CampaignKpiSnapshot(Base):
    """The KPIs of one campaign over one range as last computed, with the
    source watermark they were computed at: pages read this row, and it is
    recomputed only when the watermark moved (engine/campaigns/snapshots.py)."""

    __tablename__ = "campaign_kpi_snapshots"

    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    range_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    watermark: Mapped[str] = mapped_column(String(255))
    computed_at: Mapped[datetime] = mapped_column(DateTime())
    body: Mapped[dict[str, Any]] = mapped_column(JSONType)


# --- issue 14, items 6 and 7: alerts and retrospectives (migration 0023) --------------

from sqlalchemy import Float  # noqa: E402 (kept with the tables that use it)

class AlertFiring(Base):
    """One alert that fired for one campaign in one period. The unique
    ``(alert_id, campaign_id, period_key)`` is what makes "at most once per
    period" hold across ticks, restarts and two schedulers."""

    __tablename__ = "alert_firings"
    __table_args__ = (
        UniqueConstraint("alert_id", "campaign_id", "period_key"),
        Index("ix_alert_firings_fired_at", "fired_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(128))
    # No foreign key: campaigns may be defined after or removed before their alerts' history.
    campaign_id: Mapped[str] = mapped_column(String(128))
    period_key: Mapped[str] = mapped_column(String(32))
    kpi: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    fired_at: Mapped[datetime] = mapped_column(DateTime())
    notified: Mapped[int] = mapped_column(Integer, default=0)


class CampaignRetrospective(Base):
    """The 复盘 of an ended campaign: KPIs against targets frozen when it
    ended (``kpis``), and what the team writes (``lessons``, a mapping of the
    form's fields). ``version`` guards concurrent edits."""

    __tablename__ = "campaign_retrospectives"

    campaign_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    ended_on: Mapped[date | None] = mapped_column(Date)
    kpis: Mapped[dict[str, Any]] = mapped_column(JSONType)
    lessons: Mapped[dict[str, Any]] = mapped_column(JSONType)
    search_text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime())
    updated_at: Mapped[datetime] = mapped_column(DateTime())
    updated_by: Mapped[str | None] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer, default=1)
