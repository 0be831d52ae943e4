"""``/api/v1/orders``: create, idempotent repeat, conflicting repeat 409,
unknown customer 422, roles, batches with bad items; every answer checked
against the OpenAPI document. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from decimal import Decimal

from flask import Flask
from jsonschema import Draft202012Validator

from .support import bearer, customer, events, order


def _validator(doc: dict, name: str) -> Draft202012Validator:
    schema = {"$defs": doc["components"]["schemas"], "$ref": f"#/$defs/{name}"}
    text = json.dumps(schema).replace("#/components/schemas/", "#/$defs/")
    return Draft202012Validator(json.loads(text))


def _check(doc: dict, path: str, method: str, status: int, body: dict) -> None:
    """``body`` fits the schema the document declares for this answer."""
    response = doc["paths"][path][method]["responses"][str(status)]
    ref = response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    _validator(doc, ref).validate(body)


def test_create_repeat_conflict_and_get(app: Flask, tokens, services) -> None:
    client = app.test_client()
    doc = client.get("/api/v1/openapi.json").get_json()
    for name in ("OrderIn", "Order", "OrderBatch", "OrderBatchResult", "OrderChanged", "OrderRefund"):
        Draft202012Validator.check_schema(doc["components"]["schemas"][name])
    _validator(doc, "OrderIn").validate(order("A1"))  # what the tests send is what the document describes
    auth = bearer(tokens["till"])

    first = client.post("/api/v1/orders", json=order("A1"), headers=auth)
    assert first.status_code == 201, first.text
    body = first.get_json()
    _check(doc, "/orders", "post", 201, body)
    assert (body["amount"], body["discount"], body["net_amount"], body["status"]) == ("88.00", "10.00", "88.00", "paid")
    assert body["placed_at"] == "2025-02-28T07:30:00Z"  # naive: business time (Shanghai)
    assert body["coupon_code"] == "WB20KBEV2MSTRH" and body["store"] == "SH01"
    assert body["lines"] == [{"sku": "SKU-1", "name": "咖啡豆", "quantity": 2, "unit_price": "49.00"}]
    assert first.headers["Location"].endswith("/api/v1/orders/pos/A1")
    zhang = customer(services.session_factory, "M001")
    assert body["customer_id"] == zhang.id
    assert (zhang.order_count, zhang.total_spent) == (1, Decimal("88.00"))
    assert zhang.last_purchase_at.isoformat() == "2025-02-28T07:30:00"
    assert zhang.rfm_segment not in (None, "prospect") and zhang.rfm_r is not None

    # The same order again (amount as a number, time with an offset: same content) → the stored order, 200.
    again = client.post("/api/v1/orders", json=order("A1", amount=88, placed_at="2025-02-28T07:30:00+00:00"),
                        headers=auth)
    assert again.status_code == 200, again.text
    _check(doc, "/orders", "post", 200, again.get_json())
    assert again.get_json()["id"] == body["id"]
    # Another content under the same key → 409, nothing changed.
    clash = client.post("/api/v1/orders", json=order("A1", amount="99.00"), headers=auth)
    assert clash.status_code == 409, clash.text
    _check(doc, "/orders", "post", 409, clash.get_json())
    assert clash.get_json()["error"]["code"] == "conflict"
    zhang = customer(services.session_factory, "M001")
    assert (zhang.order_count, zhang.total_spent) == (1, Decimal("88.00"))
    assert len(events(services.session_factory, "order.created")) == 1
    # The same external id from another source is another order.
    other = client.post("/api/v1/orders", json=order("A1", source="shop"), headers=auth)
    assert other.status_code == 201

    got = client.get("/api/v1/orders/pos/A1", headers=auth)
    assert got.status_code == 200 and got.get_json() == body
    _check(doc, "/orders/{source}/{external_id}", "get", 200, got.get_json())
    missing = client.get("/api/v1/orders/pos/NOPE", headers=auth)
    assert missing.status_code == 404
    _check(doc, "/orders/{source}/{external_id}", "get", 404, missing.get_json())


def test_customer_by_phone_or_id_and_unknown_customer_is_422(app: Flask, tokens, services) -> None:
    client = app.test_client()
    doc = client.get("/api/v1/openapi.json").get_json()
    auth = bearer(tokens["till"])
    li = customer(services.session_factory, "M002")
    by_phone = client.post("/api/v1/orders", json=order("P1", customer={"phone": "+86 138-0000-0002"}), headers=auth)
    assert by_phone.status_code == 201 and by_phone.get_json()["customer_id"] == li.id
    by_id = client.post("/api/v1/orders", json=order("P2", customer=None, customer_id=li.id), headers=auth)
    assert by_id.status_code == 201 and by_id.get_json()["customer_id"] == li.id

    for body, field in ((order("U1", customer={"phone": "13999999999"}), "customer"),
                        (order("U2", customer=None, customer_id=999999), "customer_id"),
                        (order("U3", customer={"external_id": "NOBODY"}), "customer")):
        response = client.post("/api/v1/orders", json=body, headers=auth)
        assert response.status_code == 422, response.text
        _check(doc, "/orders", "post", 422, response.get_json())
        assert response.get_json()["errors"][0]["field"] == field
        assert response.get_json()["errors"][0]["code"] == "customer_not_found"
    bad = client.post("/api/v1/orders", json=order("B1", amount="-1", placed_at="yesterday", colour="red",
                                                   customer=None), headers=auth)
    assert bad.status_code == 422
    fields = {(e["field"], e["code"]) for e in bad.get_json()["errors"]}
    assert fields == {("colour", "unknown_field"), ("customer_id", "required"), ("amount", "min"),
                      ("placed_at", "datetime_type")}
    assert customer(services.session_factory, "M002").order_count == 2
    assert len(events(services.session_factory, "order.created")) == 2


def test_only_integration_and_admin_tokens(app: Flask, tokens) -> None:
    client = app.test_client()
    denied = client.post("/api/v1/orders", json=order("R1"), headers=bearer(tokens["staff"]))
    assert denied.status_code == 403 and denied.get_json()["error"]["code"] == "forbidden"
    assert client.post("/api/v1/orders", json=order("R1")).status_code == 401
    assert client.post("/api/v1/orders", json=order("R1"), headers=bearer(tokens["boss"])).status_code == 201
    assert client.get("/api/v1/orders/pos/R1", headers=bearer(tokens["staff"])).status_code == 403


def test_batch_with_bad_items(app: Flask, tokens, services) -> None:
    client = app.test_client()
    doc = client.get("/api/v1/openapi.json").get_json()
    auth = bearer(tokens["till"])
    client.post("/api/v1/orders", json=order("K0"), headers=auth)
    items = [order(f"K{i}", customer={"external_id": f"M00{1 + i % 5}"}, amount=f"{10 * i}.00", lines=None)
             for i in range(1, 8)]
    items[2] = order("K3", customer={"external_id": "GHOST"})       # unknown customer
    items[3] = {"source": "pos", "external_id": "K4", "amount": "x"}  # bad fields
    items.append(order("K0"))                                       # a repeat of a stored order
    items.append(order("K0", amount="1.00"))                        # a conflicting repeat
    items.append(dict(items[0]))                                    # a repeat inside the batch
    items.append(order("K1", amount="2.00", customer={"external_id": "M002"}))  # a conflict inside the batch
    _validator(doc, "OrderBatch").validate({"orders": [i for i in items if i.get("amount") != "x"]})
    response = client.post("/api/v1/orders/batch", json={"orders": items}, headers=auth)
    assert response.status_code == 200, response.text
    body = response.get_json()
    _check(doc, "/orders/batch", "post", 200, body)
    statuses = [r["status"] for r in body["results"]]
    assert statuses == ["created", "created", "invalid", "invalid", "created", "created", "created",
                        "existing", "conflict", "existing", "conflict"]
    assert [r["index"] for r in body["results"]] == list(range(len(items)))
    assert body["counts"] == {"created": 5, "existing": 2, "conflict": 2, "invalid": 2}
    assert body["results"][2]["errors"][0]["code"] == "customer_not_found"
    assert {e["field"] for e in body["results"][3]["errors"]} == {"customer_id", "amount"}
    assert body["results"][9]["id"] == body["results"][0]["id"]
    assert body["results"][8]["order"]["amount"] == "88.00"  # a conflict shows what is stored
    assert len(events(services.session_factory, "order.created")) == 6
    # Amounts 10, 20, 50, 60, 70 for M002, M003, M001(K5 → M001), M002(K6), M003(K7).
    assert customer(services.session_factory, "M002").total_spent == Decimal("70.00")
    assert customer(services.session_factory, "M001").total_spent == Decimal("138.00")

    too_many = client.post("/api/v1/orders/batch", json={"orders": [order("Z")] * 1001}, headers=auth)
    assert too_many.status_code == 422 and too_many.get_json()["errors"][0]["code"] == "too_many_items"
    _check(doc, "/orders/batch", "post", 422, too_many.get_json())
    assert client.post("/api/v1/orders/batch", json=[order("Z")], headers=auth).status_code == 422
