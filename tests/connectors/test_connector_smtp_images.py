"""Report charts travel as inline images (issue 14, item 7): an e-mail whose
options carry ``inline_images`` goes out as multipart/related, each image with
the Content-ID its HTML refers to; a broken image fails that message alone."""

from __future__ import annotations

import base64
import email
import sys
from email import policy

# tests/packaging (the wheel test) shadows the installed `packaging` that
# matplotlib imports, because tests/ is on sys.path: load the real one first.
_path = sys.path[:]
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("/tests")]
import packaging.version  # noqa: F401

sys.path[:] = _path

from test_connector_smtp import certificate, server, smtp  # noqa: F401 (fixtures)

from engine.ports import Outcome, OutgoingMessage
from web.charts import Chart, Column, Table
from web.report_images import chart_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png() -> bytes:
    table = Table("daily", "每日核销", (Column("day", "日期"), Column("n", "核销", "int")),
                  (("2025-03-01", 3), ("2025-03-02", 5)))
    return chart_png(Chart("daily", "bar", table, "day", ("n",)), tz="Asia/Shanghai", locale="zh")


def test_a_chart_renders_as_a_png() -> None:
    png = _png()
    assert png.startswith(PNG_MAGIC) and len(png) > 2000


def test_inline_images_are_related_parts_of_the_html(server, clock, certificate) -> None:  # noqa: F811
    png = _png()
    message = OutgoingMessage(
        id="r1", channel="email", recipient="owner@example.com", subject="活动周报", body="周报",
        html='<p>周报</p><img src="cid:daily-2025-W10@promoflow">',
        options={"inline_images": [{"cid": "daily-2025-W10@promoflow", "content_type": "image/png",
                                    "title": "每日", "data": base64.b64encode(png).decode()}]})
    bad = OutgoingMessage(id="r2", channel="email", recipient="owner@example.com", subject="x", body="x",
                          html="<p>x</p>", options={"inline_images": [{"cid": "a", "data": "!!not base64!!"}]})
    first, second = smtp(server, clock, certificate[0]).send_batch([message, bad])
    assert first.outcome is Outcome.ACCEPTED
    assert second.outcome is Outcome.PERMANENT and second.code == "bad_message"
    [(_, envelope)] = server.handler_ref.messages
    parsed = email.message_from_bytes(envelope.content, policy=policy.default)
    related = [p for p in parsed.walk() if p.get_content_type() == "multipart/related"]
    assert len(related) == 1
    [image] = [p for p in parsed.walk() if p.get_content_type() == "image/png"]
    assert image["Content-ID"] == "<daily-2025-W10@promoflow>"
    assert image.get_content() == png
    assert 'src="cid:daily-2025-W10@promoflow"' in parsed.get_body(("html",)).get_content()
