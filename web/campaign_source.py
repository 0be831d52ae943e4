"""Where the dashboard pages get campaigns and their KPI bodies: the one seam
between the pages (issue 14, item 5) and the campaigns KPI engine
(``engine.campaigns``, built alongside by the campaigns work).

Why a seam: the pages read snapshots the engine keeps fresh (a page view never
recomputes KPIs), and the page and ``GET /api/v1/campaigns/<id>/kpis`` must show
the same body; so the pages ask the engine for exactly what the API answers.
:class:`CampaignSource` is that contract; :func:`source` returns the engine's
implementation, or None when the engine is not installed (the pages then say so
rather than invent numbers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol


@dataclass(frozen=True)
class CampaignRow:
    """A campaign as lists show it, with its headline KPIs (may be empty) and
    its daily revenue for the trend sparkline."""

    id: str
    title: str
    status: str
    owner: str | None = None
    channel: str | None = None
    starts_on: date | None = None
    ends_on: date | None = None
    budget: Any = None
    title_en: str | None = None
    kpis: Mapping[str, Any] | None = None
    daily: Sequence[Mapping[str, Any]] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "title_en": self.title_en, "status": self.status,
                "owner": self.owner, "channel": self.channel, "starts_on": self.starts_on, "ends_on": self.ends_on,
                "budget": self.budget, "kpis": dict(self.kpis or {})}


class CampaignSource(Protocol):
    """What the pages need of the campaigns engine."""

    def campaigns(self, *, search: str | None = None, status: str | None = None,
                  with_kpis: bool = True) -> list[CampaignRow]:
        """Campaigns matching ``search`` (id or title) and ``status``, newest
        first; ``with_kpis=False`` leaves ``kpis`` and ``daily`` empty (cheaper)."""

    def kpis(self, campaign_id: str, *, start: date | None = None, end: date | None = None) -> Mapping[str, Any] | None:
        """The body of ``GET /api/v1/campaigns/<id>/kpis?from=&to=`` (None: unknown campaign)."""


class EngineSource:
    """:class:`CampaignSource` over the campaigns engine
    (``engine.campaigns.service.CampaignService``): campaigns from the
    ``campaigns`` table, KPI bodies from its snapshots (computed on first
    read, then refreshed by its scheduler tick as the sources move)."""

    def __init__(self, services: Any):
        from engine.campaigns.service import CampaignService

        self._svc = services
        self._campaigns = CampaignService(services.session_factory, tz=services.tz,
                                          definitions=services.registry.current)

    def _body(self, view: Any, kpis: Any) -> dict[str, Any]:
        from engine.campaigns.kpis import kpis_to_json

        return {"campaign": view.to_json(), "kpis": kpis_to_json(kpis)}

    def campaigns(self, *, search: str | None = None, status: str | None = None,
                  with_kpis: bool = True) -> list[CampaignRow]:
        now = self._svc.now()
        needle = (search or "").lower()
        rows = []
        for view in self._campaigns.list(now=now, status=status):
            if needle and needle not in " ".join((view.id, view.title, view.title_en or "")).lower():
                continue
            body: Mapping[str, Any] = {}
            if with_kpis and view.status != "planned":
                body = self._body(view, self._campaigns.kpis(view.id, now=now))["kpis"]
            rows.append(CampaignRow(id=view.id, title=view.title, title_en=view.title_en, status=view.status,
                                    owner=view.owner, channel=view.channel, starts_on=view.starts_on,
                                    ends_on=view.ends_on, budget=view.budget, kpis=body,
                                    daily=tuple(body.get("daily") or ())))
        return rows

    def kpis(self, campaign_id: str, *, start: date | None = None, end: date | None = None) -> Mapping[str, Any] | None:
        from datetime import timedelta

        from engine.campaigns.service import CampaignNotFound

        now = self._svc.now()
        try:
            view = self._campaigns.get(campaign_id, now=now)
        except CampaignNotFound:
            return None
        d_start, d_end = self._campaigns.default_range(view)
        lo = self._campaigns.local_day_start(start) if start else d_start
        hi = self._campaigns.local_day_start(end + timedelta(days=1)) if end else d_end
        return self._body(view, self._campaigns.kpis(campaign_id, now=now, start=lo, end=hi))


def source(services: Any) -> CampaignSource | None:
    """The campaigns engine's source for this app (built once per app), or
    None when the engine is not installed."""
    cached = getattr(services, "_campaign_source", _UNSET)
    if cached is _UNSET:
        try:
            cached = EngineSource(services)
        except ImportError:
            cached = None
        services._campaign_source = cached  # per app: Services is built once per app
    return cached  # type: ignore[return-value]


_UNSET = object()


__all__ = ["CampaignRow", "CampaignSource", "EngineSource", "source"]
