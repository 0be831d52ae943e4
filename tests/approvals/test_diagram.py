"""The SVG diagram: well-formed, every step drawn, the current step highlighted,
finished steps marked, text escaped."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

from engine.approvals.diagram import render_svg
from engine.approvals.machine import Act, InstanceState, Start, step

from .test_machine import NOW
from .test_property import MACHINE_DIR as DIR
from .test_property import SHIPPED, synthetic

NS = {"svg": "http://www.w3.org/2000/svg"}


def steps_by_class(svg: str) -> dict[str, str]:
    root = ET.fromstring(svg)
    return {g.get("data-step"): g.get("class") for g in root.iter("{http://www.w3.org/2000/svg}g")
            if g.get("data-step")}


def test_the_shipped_flow_with_its_current_step() -> None:
    spec = SHIPPED.workflows["activity_approval"]
    assert set(steps_by_class(render_svg(spec))) == {"manager_review", "finance_review", "mark_approved", "announce"}
    state, _ = step(spec, InstanceState(), Start({"budget": "60000.00"}, "staff", NOW, ("budget",)), DIR)
    classes = steps_by_class(render_svg(spec, state))
    assert classes["manager_review"] == "pf-step pf-current"
    assert classes["finance_review"] == "pf-step"


def test_branches_lanes_and_marks_in_english() -> None:
    spec = synthetic()
    state, _ = step(spec, InstanceState(), Start({"budget": "100.00"}, "staff", NOW, ("budget",)), DIR)
    state, _ = step(spec, state, Act(state.open_tasks[0].id, state.open_tasks[0].assignee, "approve", now=NOW), DIR)
    svg = render_svg(spec, state, locale="en")
    classes = steps_by_class(svg)
    assert classes["first"] == "pf-step pf-approved"
    assert len(classes) == 10
    assert "Otherwise" in svg and "money" in svg


def test_text_is_escaped() -> None:
    spec = SHIPPED.workflows["activity_approval"]
    first = dataclasses.replace(spec.steps[0], title='<script>alert("x")</script>&')
    hostile = dataclasses.replace(spec, title="</title><script>", steps=(first, *spec.steps[1:]))
    svg = render_svg(hostile)
    ET.fromstring(svg)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
