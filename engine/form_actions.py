"""A form's record bound to a customer, and its ``on_submit`` steps.

```yaml
kind: form
id: launch_reservation
customer: {field: customer}          # or a phone field: the customer with that phone
on_submit:
  - add_tag: launch_reserved
  - emit: custom.launch.reserved
```

Run inside the submission's transaction (:meth:`engine.records.RecordService.create`),
so the record, its ``record.created`` event (which then carries
``customer_id``: rules on ``record.created`` act on the customer), the tags
and the events commit together or not at all. Tags go through the same writer
as a journey's ``add_tag`` step (``automation_repo.add_tags``, insert-or-ignore)
and announce ``customer.tagged`` as that step does, so a rule cannot tell a
tag from a form from a tag from a journey.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.customers_import import normalize_phone
from engine.definitions.specs import EmitSpec, FormSpec, TagSpec
from engine.forms.errors import FieldError, ValidationFailed
from engine.storage import automation_repo
from engine.storage import records_repo as repo
from engine.storage.events_repo import append_event

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["bound_customer", "run_on_submit"]


def bound_customer(session: Session, form: FormSpec, data: Mapping[str, Any]) -> int | None:
    """The customer a record of ``form`` is about, or None when the form is
    not bound (``customer:`` absent) or the field is empty.

    Raises:
        ValidationFailed: the phone matches no customer (``no_customer_with_phone``
            on that field), or the customer id does not exist (``customer_not_found``):
            a bound record must be about a real customer.
    """
    key = form.customer_field
    if key is None:
        return None
    value = data.get(key)
    if value is None or value == "":
        return None
    if form.field(key).type == "phone":
        try:
            found = repo.customer_by_phone(session, normalize_phone(str(value)))
        except ValueError:
            found = None
    else:
        found = int(value) if repo.customer_exists(session, int(value)) else None
    if found is None:
        code = "no_customer_with_phone" if form.field(key).type == "phone" else "customer_not_found"
        raise ValidationFailed([FieldError(key, code, {"id": value})])
    return found


def run_on_submit(session: Session, form: FormSpec, *, record_id: int, customer_id: int | None,
                  now: datetime) -> None:
    """Run ``form.on_submit`` for the record's customer (nothing without one:
    an optional customer field left empty)."""
    if customer_id is None or not form.on_submit:
        return
    origin = {"record_id": record_id, "form_id": form.id}
    for step in form.on_submit:
        if isinstance(step, TagSpec):
            automation_repo.add_tags(session, {(customer_id, step.tag)})
            append_event(session, "customer.tagged", "customer", customer_id,
                         {"customer_id": customer_id, "tag": step.tag, "removed": False, **origin}, now)
        elif isinstance(step, EmitSpec):
            append_event(session, step.event, "customer", customer_id, {"customer_id": customer_id, **origin}, now)
