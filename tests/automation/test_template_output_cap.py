"""Template output is capped per channel (issue 16): a template that loops
its way to megabytes stops with a clear error instead of filling the outbox."""

from __future__ import annotations

import pytest

from engine.definitions.specs import TemplateSpec
from engine.templates import MAX_OUTPUT, TemplateRenderError, output_cap, render, render_string

LOOP = "{% for i in range(100000) %}{% for j in range(100000) %}好{% endfor %}{% endfor %}"


def tpl(body: str, channels: tuple[str, ...] = ("email", "sms", "wecom"), **kw: object) -> TemplateSpec:
    return TemplateSpec(id="big", channels=channels, body=body, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("channel", ["sms", "wecom", "email"])
def test_a_runaway_loop_stops_at_the_channel_cap(channel: str) -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render(tpl(LOOP), {}, channel=channel)
    cap = MAX_OUTPUT[channel]
    assert caught.value.template_id == "big" and caught.value.part == "body"
    assert str(caught.value) == f"template `big` (body): renders to more than {cap} characters, the limit of this part"


@pytest.mark.parametrize("channel", ["sms", "wecom", "email"])
def test_a_body_right_at_the_cap_renders(channel: str) -> None:
    cap = MAX_OUTPUT[channel]
    body = f"{{% for i in range({cap // 100}) %}}{'x' * 100}{{% endfor %}}"
    assert len(render(tpl(body), {}, channel=channel).body) == cap
    over = body + "x"
    with pytest.raises(TemplateRenderError):
        render(tpl(over), {}, channel=channel)


def test_substituted_values_count_too() -> None:
    """The fast path (text and ``{{ a.b }}`` only) is capped like Jinja's."""
    cap = MAX_OUTPUT["sms"]
    with pytest.raises(TemplateRenderError):
        render(tpl("您好 {{ customer.name }}"), {"customer": {"name": "长" * cap}}, channel="sms")
    assert render(tpl("您好 {{ customer.name }}"), {"customer": {"name": "王"}}, channel="sms").body == "您好 王"


def test_subject_and_render_string_are_capped() -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render(tpl("hi", channels=("email",), subject=LOOP), {}, channel="email")
    assert caught.value.part == "subject" and str(output_cap("email", "subject")) in caught.value.message
    with pytest.raises(TemplateRenderError):
        render_string(LOOP, {})
