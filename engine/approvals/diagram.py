"""The flow drawn as SVG: ``render_svg(spec, state=None, locale="zh") -> str``.

Pure and dependency-free: one box per step, top to bottom; a branch's paths
and a parallel step's lanes side by side, joined again below. With a state
(an ``InstanceState``, or any object/mapping with ``current_steps`` and
``marks``), the current step(s) are highlighted and finished steps marked
approved, rejected, skipped or done. Every text drawn is XML-escaped, so a
step title cannot inject markup into the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from engine.definitions.specs import (
    ApprovalSpec,
    Assignees,
    BranchSpec,
    ParallelSpec,
    SendSpec,
    SetFieldSpec,
    WorkflowSpec,
    WorkflowStep,
)

BOX_W, BOX_H, GAP_Y, GAP_X, PAD = 168, 48, 26, 24, 16

_LABELS = {
    "zh": {"start": "提交", "end": "结束", "approval": "审批", "send": "发送消息", "set_field": "更新字段",
           "cc": "抄送", "branch": "条件分支", "parallel": "并行", "default": "其他", "case": "条件",
           "any": "或签", "all": "会签", "sequential": "依次审批", "threshold": "票数",
           "approved": "已通过", "rejected": "已驳回", "skipped": "已跳过", "done": "已完成", "current": "进行中"},
    "en": {"start": "Submit", "end": "End", "approval": "Approval", "send": "Send", "set_field": "Set field",
           "cc": "CC", "branch": "Branch", "parallel": "Parallel", "default": "Otherwise", "case": "Case",
           "any": "any one", "all": "everyone", "sequential": "in turn", "threshold": "votes",
           "approved": "approved", "rejected": "rejected", "skipped": "skipped", "done": "done",
           "current": "in progress"},
}

_STYLE = {
    None: ("#ffffff", "#8a94a6", ""),
    "current": ("#fff4d6", "#e08a00", ""),
    "approved": ("#e7f6ec", "#2f9e5b", ""),
    "done": ("#eef6f1", "#5aa77a", ""),
    "rejected": ("#fdeaea", "#d64545", ""),
    "skipped": ("#f5f6f8", "#b4bac6", "4 3"),
}


@dataclass
class _Canvas:
    parts: list[str] = field(default_factory=list)

    def box(self, x: float, y: float, w: float, h: float, title: str, sub: str, state: str | None,
            step_id: str | None, rounded: int = 8) -> None:
        fill, stroke, dash = _STYLE.get(state, _STYLE[None])
        attrs = f' data-step={quoteattr(step_id)}' if step_id else ""
        cls = f' class="pf-step pf-{state}"' if state else ' class="pf-step"'
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        width = 3 if state == "current" else 1.5
        self.parts.append(
            f'<g{cls}{attrs}><rect x="{x:.0f}" y="{y:.0f}" width="{w:.0f}" height="{h:.0f}" rx="{rounded}" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{width}"{dash_attr}/>'
            f'<text x="{x + w / 2:.0f}" y="{y + (19 if sub else h / 2 + 5):.0f}" text-anchor="middle" '
            f'font-size="13" font-weight="600" fill="#1f2633">{escape(_clip(title, 18))}</text>'
            + (f'<text x="{x + w / 2:.0f}" y="{y + 36:.0f}" text-anchor="middle" font-size="11" '
               f'fill="#5b6472">{escape(_clip(sub, 26))}</text>' if sub else "")
            + "</g>"
        )

    def line(self, x1: float, y1: float, x2: float, y2: float, arrow: bool = True) -> None:
        marker = ' marker-end="url(#pf-arrow)"' if arrow else ""
        self.parts.append(f'<path d="M{x1:.0f},{y1:.0f} L{x2:.0f},{y2:.0f}" stroke="#8a94a6" '
                          f'stroke-width="1.5" fill="none"{marker}/>')

    def poly(self, points: list[tuple[float, float]], arrow: bool = True) -> None:
        marker = ' marker-end="url(#pf-arrow)"' if arrow else ""
        d = " L".join(f"{x:.0f},{y:.0f}" for x, y in points)
        self.parts.append(f'<path d="M{d}" stroke="#8a94a6" stroke-width="1.5" fill="none"{marker}/>')

    def label(self, x: float, y: float, text: str) -> None:
        self.parts.append(f'<text x="{x:.0f}" y="{y:.0f}" text-anchor="middle" font-size="11" '
                          f'fill="#5b6472">{escape(_clip(text, 22))}</text>')


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _get(obj: Any, name: str, default: Any) -> Any:
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


class _Drawer:
    def __init__(self, locale: str, current: set[str], marks: Mapping[str, str]):
        self.t = _LABELS["en" if locale.lower().startswith("en") else "zh"]
        self.en = locale.lower().startswith("en")
        self.current = current
        self.marks = marks
        self.canvas = _Canvas()

    # sizes ------------------------------------------------------------------------
    def seq_size(self, steps: tuple[WorkflowStep, ...]) -> tuple[float, float]:
        if not steps:
            return BOX_W, 0
        sizes = [self.step_size(s) for s in steps]
        return max(w for w, _ in sizes), sum(h for _, h in sizes) + GAP_Y * (len(sizes) - 1)

    def columns(self, st: WorkflowStep) -> list[tuple[str, tuple[WorkflowStep, ...]]]:
        if isinstance(st.action, BranchSpec):
            cols = [(f"{self.t['case']} {i + 1}", c.steps) for i, c in enumerate(st.action.cases)]
            return cols + [(self.t["default"], st.action.default)]
        assert isinstance(st.action, ParallelSpec)
        return [(b.id, b.steps) for b in st.action.branches]

    def step_size(self, st: WorkflowStep) -> tuple[float, float]:
        if not isinstance(st.action, (BranchSpec, ParallelSpec)):
            return BOX_W, BOX_H
        sizes = [self.seq_size(steps) for _, steps in self.columns(st)]
        width = sum(w for w, _ in sizes) + GAP_X * (len(sizes) - 1)
        inner = max(h for _, h in sizes)
        # header box, gap, column label, columns, gap, join bar
        return max(width, BOX_W), BOX_H + GAP_Y + 14 + inner + GAP_Y + 8

    # drawing ------------------------------------------------------------------------
    def state_of(self, st: WorkflowStep) -> str | None:
        if st.id in self.current:
            return "current"
        return self.marks.get(st.id)

    def title(self, st: WorkflowStep) -> str:
        if self.en and st.title_en:
            return st.title_en
        return st.title or st.id

    def subtitle(self, st: WorkflowStep) -> str:
        a = st.action
        t = self.t
        if isinstance(a, ApprovalSpec):
            who = a.assignees.role or ", ".join(a.assignees.users) or a.assignees.field or (
                "manager" if a.assignees.manager else "")
            mode = t.get(a.mode, a.mode)
            if a.mode == "threshold" and a.threshold:
                mode = f"{a.threshold} {mode}"
            return f"{who} · {mode}"
        if isinstance(a, SendSpec):
            return f"{t['send']} · {a.channel}"
        if isinstance(a, SetFieldSpec):
            return f"{t['set_field']} · " + ", ".join(f"{k}={v}" for k, v in a.values.items())
        if isinstance(a, Assignees):
            return f"{t['cc']} · " + (a.role or ", ".join(a.users) or a.field or "manager")
        if isinstance(a, BranchSpec):
            return t["branch"]
        return t["parallel"]

    def draw_seq(self, steps: tuple[WorkflowStep, ...], cx: float, y: float) -> float:
        """Draw a sequence centred on ``cx`` from ``y``; returns the bottom y."""
        for i, st in enumerate(steps):
            if i:
                self.canvas.line(cx, y, cx, y + GAP_Y)
                y += GAP_Y
            y = self.draw_step(st, cx, y)
        return y

    def draw_step(self, st: WorkflowStep, cx: float, y: float) -> float:
        _, h = self.step_size(st)
        state = self.state_of(st)
        sub = self.subtitle(st)
        if state and state != "current":
            sub = f"{sub} · {self.t[state]}"
        if not isinstance(st.action, (BranchSpec, ParallelSpec)):
            self.canvas.box(cx - BOX_W / 2, y, BOX_W, BOX_H, self.title(st), sub, state, st.id)
            return y + BOX_H
        self.canvas.box(cx - BOX_W / 2, y, BOX_W, BOX_H, self.title(st), sub, state, st.id, rounded=22)
        top = y + BOX_H
        cols = self.columns(st)
        sizes = [self.seq_size(steps) for _, steps in cols]
        total = sum(cw for cw, _ in sizes) + GAP_X * (len(sizes) - 1)
        x = cx - total / 2
        col_top = top + GAP_Y + 14
        join_y = top + h - BOX_H - 8
        for (label, steps), (cw, _) in zip(cols, sizes):
            ccx = x + cw / 2
            self.canvas.poly([(cx, top), (cx, top + GAP_Y / 2), (ccx, top + GAP_Y / 2), (ccx, col_top)])
            self.canvas.label(ccx, top + GAP_Y + 8, label)
            bottom = self.draw_seq(steps, ccx, col_top) if steps else col_top
            self.canvas.poly([(ccx, bottom), (ccx, join_y)], arrow=False)
            x += cw + GAP_X
        first_cx = cx - total / 2 + sizes[0][0] / 2
        last_cx = cx + total / 2 - sizes[-1][0] / 2
        self.canvas.line(first_cx, join_y, last_cx, join_y, arrow=False)
        return join_y


def render_svg(spec: WorkflowSpec, state: Any = None, locale: str = "zh") -> str:
    """The flow of ``spec`` as a standalone SVG document (text).

    ``state``: an ``InstanceState`` / ``InstanceView`` (or a mapping) whose
    ``current_steps`` are highlighted and whose ``marks`` ({step id: approved,
    rejected, skipped, done}) colour finished steps; terminal states mark the
    end node. All text is escaped.
    """
    current = set(_get(state, "current_steps", ()) or ())
    marks = dict(_get(state, "marks", {}) or {})
    status = _get(state, "status", None)
    drawer = _Drawer(locale, current, marks)
    width, _ = drawer.seq_size(spec.steps)
    width += 2 * PAD
    cx = width / 2
    canvas = drawer.canvas
    y: float = PAD
    canvas.box(cx - 50, y, 100, 30, drawer.t["start"], "", "done" if state is not None else None, None, rounded=15)
    y += 30
    canvas.line(cx, y, cx, y + GAP_Y)
    y = drawer.draw_seq(spec.steps, cx, y + GAP_Y)
    canvas.line(cx, y, cx, y + GAP_Y)
    y += GAP_Y
    end_state = {"approved": "approved", "rejected": "rejected", "withdrawn": "skipped"}.get(str(status))
    end_title = drawer.t["end"] if end_state is None else f"{drawer.t['end']} · {drawer.t.get(str(status), status)}"
    canvas.box(cx - 60, y, 120, 30, end_title, "", end_state, None, rounded=15)
    total_h = y + 30 + PAD
    title = spec.title_en if drawer.en and spec.title_en else spec.title
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="pf-flow" role="img" width="{width:.0f}" '
        f'height="{total_h:.0f}" viewBox="0 0 {width:.0f} {total_h:.0f}" font-family="sans-serif">'
        f"<title>{escape(title)}</title>"
        '<defs><marker id="pf-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#8a94a6"/></marker></defs>'
        + "".join(canvas.parts) + "</svg>"
    )


__all__ = ["render_svg"]
