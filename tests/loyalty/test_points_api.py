"""Points through the API: orders earn under the published policy, a refund
and a cancellation take their share back (once), redeeming spends the lot
that lapses first, a repeat is answered once, a short balance is a 422 with
field errors; every answer checked against the OpenAPI document. SQLite and
PostgreSQL."""

from __future__ import annotations

import json

from flask import Flask
from jsonschema import Draft202012Validator

from .support import bearer, customer, ledger_sum, order


def _validator(doc: dict, name: str) -> Draft202012Validator:
    schema = {"$defs": doc["components"]["schemas"], "$ref": f"#/$defs/{name}"}
    text = json.dumps(schema).replace("#/components/schemas/", "#/$defs/")
    return Draft202012Validator(json.loads(text))


def _check(doc: dict, path: str, method: str, status: int, body: dict) -> None:
    response = doc["paths"][path][method]["responses"][str(status)]
    ref = response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    _validator(doc, ref).validate(body)


def _account(client, cid: int, auth: dict, doc: dict, **args: int) -> dict:
    got = client.get(f"/api/v1/customers/{cid}/points", query_string=args, headers=auth)
    assert got.status_code == 200, got.text
    _check(doc, "/customers/{customer_id}/points", "get", 200, got.get_json())
    return got.get_json()


def _lots(account: dict) -> dict[str, int]:
    """What is left of each earned lot, by the order it came from."""
    return {e["reason"]: e["remaining"] for e in account["entries"] if e["kind"] == "earn"}


def test_orders_earn_redeem_oldest_first_refunds_reverse(app: Flask, tokens, services) -> None:
    client = app.test_client()
    doc = client.get("/api/v1/openapi.json").get_json()
    for name in ("PointsRedeem", "PointsEntry", "PointsRedeemed", "PointsAccount"):
        Draft202012Validator.check_schema(doc["components"]["schemas"][name])
    auth = bearer(tokens["till"])
    sf = services.session_factory
    zhang = customer(sf, "M001").id

    # 1 point per yuan of net amount, rounded down; a lot lapses 365 days after the order's local day.
    assert client.post("/api/v1/orders", json=order("A1", "88.00", placed_at="2025-02-28 15:30"),
                       headers=auth).status_code == 201
    assert client.post("/api/v1/orders", json=order("A2", "120.50", placed_at="2025-03-01 09:00"),
                       headers=auth).status_code == 201
    # The same order again earns nothing more.
    assert client.post("/api/v1/orders", json=order("A1", "88.00", placed_at="2025-02-28 15:30"),
                       headers=auth).status_code == 200
    acct = _account(client, zhang, auth, doc)
    assert acct["balance"] == 208 and acct["total"] == 2
    assert acct["next_expiry"] == {"on": "2026-02-28", "points": 88}
    assert {e["reason"]: (e["points"], e["expires_on"], e["source"]) for e in acct["entries"]} == {
        "pos/A1": (88, "2026-02-28", "order"), "pos/A2": (120, "2026-03-01", "order")}
    assert customer(sf, "M001").points == 208 == ledger_sum(sf, zhang)
    _validator(doc, "PointsRedeem").validate({"customer_id": zhang, "points": 100, "idempotency_key": "R1"})

    # Spending takes the lot that lapses first (A1's 88), then 12 of A2's.
    spent = client.post("/api/v1/points/redeem", json={"customer_id": zhang, "points": 100,
                                                       "idempotency_key": "R1", "reason": "兑换咖啡杯"}, headers=auth)
    assert spent.status_code == 201, spent.text
    _check(doc, "/points/redeem", "post", 201, spent.get_json())
    assert spent.get_json()["balance"] == 108
    assert spent.get_json()["entry"]["points"] == -100 and spent.get_json()["entry"]["kind"] == "spend"
    assert _lots(_account(client, zhang, auth, doc)) == {"pos/A1": 0, "pos/A2": 108}
    # A retry with the same key is the first answer; the key with another amount is a conflict.
    again = client.post("/api/v1/points/redeem", json={"customer_id": zhang, "points": 100,
                                                       "idempotency_key": "R1"}, headers=auth)
    assert again.status_code == 200 and again.get_json()["entry"]["id"] == spent.get_json()["entry"]["id"]
    _check(doc, "/points/redeem", "post", 200, again.get_json())
    clash = client.post("/api/v1/points/redeem", json={"customer_id": zhang, "points": 50,
                                                       "idempotency_key": "R1"}, headers=auth)
    assert clash.status_code == 409 and clash.get_json()["error"]["code"] == "conflict"
    assert customer(sf, "M001").points == 108 == ledger_sum(sf, zhang)

    # More than the balance: 422 naming the field and the balance, in the caller's language.
    short = client.post("/api/v1/points/redeem", json={"customer_id": zhang, "points": 500,
                                                       "idempotency_key": "R2"},
                        headers={**auth, "Accept-Language": "en"})
    assert short.status_code == 422, short.text
    _check(doc, "/points/redeem", "post", 422, short.get_json())
    [error] = short.get_json()["errors"]
    assert (error["field"], error["code"]) == ("points", "insufficient_points") and "108" in error["message"]
    # Bad input: every field error at once, never a 500.
    bad = client.post("/api/v1/points/redeem", json={"points": "ten", "idempotency_key": "", "x": 1}, headers=auth)
    assert bad.status_code == 422
    assert {(e["field"], e["code"]) for e in bad.get_json()["errors"]} == {
        ("x", "unknown_field"), ("customer_id", "required"), ("points", "integer_type"),
        ("idempotency_key", "required")}
    nobody = client.post("/api/v1/points/redeem", json={"customer_id": 999999, "points": 1,
                                                        "idempotency_key": "R3"}, headers=auth)
    assert nobody.status_code == 422 and nobody.get_json()["errors"][0]["code"] == "customer_not_found"

    # Half of A2 refunded: A2 keeps floor(120 × 60.25 / 120.50) = 60 points; 60 come back off A2's own lot.
    refund = client.post("/api/v1/orders/pos/A2/refund", json={"amount": "60.25", "refund_id": "RF1"}, headers=auth)
    assert refund.status_code == 200 and refund.get_json()["applied"] is True
    acct = _account(client, zhang, auth, doc)
    assert acct["balance"] == 48 and _lots(acct) == {"pos/A1": 0, "pos/A2": 48}
    assert [(e["kind"], e["points"]) for e in acct["entries"]][0] == ("reverse", -60)
    # The same refund again changes nothing.
    repeat = client.post("/api/v1/orders/pos/A2/refund", json={"amount": "60.25", "refund_id": "RF1"}, headers=auth)
    assert repeat.get_json()["applied"] is False
    assert _account(client, zhang, auth, doc)["total"] == 4
    # Cancelling the rest owes 60 more; 48 are left (52 of A2 were spent): those are taken.
    assert client.post("/api/v1/orders/pos/A2/cancel", headers=auth).status_code == 200
    acct = _account(client, zhang, auth, doc)
    assert acct["balance"] == 0 and acct["next_expiry"] is None
    assert [(e["kind"], e["points"]) for e in acct["entries"]][0] == ("reverse", -48)
    assert customer(sf, "M001").points == 0 == ledger_sum(sf, zhang)
    assert client.post("/api/v1/orders/pos/A2/cancel", headers=auth).get_json()["applied"] is False
    assert _account(client, zhang, auth, doc)["total"] == 5

    # Paging: newest first.
    page = _account(client, zhang, auth, doc, page=2, per_page=2)
    assert [e["kind"] for e in page["entries"]] == ["spend", "earn"] and page["total"] == 5


def test_roles_and_bad_paths(app: Flask, tokens, services) -> None:
    client = app.test_client()
    zhang = customer(services.session_factory, "M001").id
    body = {"customer_id": zhang, "points": 1, "idempotency_key": "K"}
    assert client.post("/api/v1/points/redeem", json=body).status_code == 401
    assert client.post("/api/v1/points/redeem", json=body, headers=bearer(tokens["staff"])).status_code == 403
    assert client.get(f"/api/v1/customers/{zhang}/points", headers=bearer(tokens["mkt"])).status_code == 403
    assert client.get(f"/api/v1/customers/{zhang}/points", headers=bearer(tokens["boss"])).status_code == 200
    assert client.get("/api/v1/customers/99999999999/points", headers=bearer(tokens["till"])).status_code == 404
    assert client.get(f"/api/v1/customers/{zhang}/points?per_page=1000",
                      headers=bearer(tokens["till"])).status_code == 400
    assert client.post("/api/v1/points/redeem", data="not json", headers=bearer(tokens["till"])).status_code == 400
