"""Every figure of CampaignKpis has a title and a formula in both languages
(engine/campaigns/glossary.py), and every KPI a target may name is one of
its fields."""

from __future__ import annotations

import typing
from dataclasses import fields
from datetime import datetime

from engine.campaigns import kpis as k
from engine.campaigns.glossary import GLOSSARY
from engine.definitions.catalog import TARGET_METRICS

#: Fields that are not figures: identity, range, tables and the method's name.
NOT_FIGURES = {"campaign_id", "start", "end", "as_of", "attribution_window_days", "uplift_method", "arms", "daily",
               "funnel", "cohorts", "costs", "targets", "nps_distribution", "feedback_tags"}


def test_every_figure_has_a_glossary_entry_in_both_languages() -> None:
    figures = {f.name for f in fields(k.CampaignKpis)} - NOT_FIGURES
    assert figures <= set(GLOSSARY), sorted(figures - set(GLOSSARY))
    for name, term in GLOSSARY.items():
        assert term.zh and term.en and term.formula_zh and term.formula_en, name
        assert term.title("zh") == term.zh and term.formula("en") == term.formula_en


def test_target_metrics_are_numeric_fields() -> None:
    hints = typing.get_type_hints(k.CampaignKpis, vars(k))
    for metric in TARGET_METRICS:
        assert metric in hints, metric
        assert hints[metric] is not datetime and metric in GLOSSARY
