"""Charts as PNG images for e-mailed reports (issue 14, item 7).

Why server-side images: mail clients run no JavaScript, so the weekly report
cannot carry the ECharts charts; matplotlib (Agg, no display) draws the same
:class:`web.charts.Chart` rows as a PNG that the e-mail embeds inline
(``cid:``). Chinese labels need a CJK font: the first installed of
:data:`CJK_FONTS` is used (Debian: fonts-noto-cjk), else labels fall back to
the default font.
"""

from __future__ import annotations

import io
from functools import cache

from .charts import Chart, format_cell

CJK_FONTS = ("Noto Sans CJK SC", "Noto Serif CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "SimHei",
             "Microsoft YaHei")


@cache
def _font_family() -> list[str]:
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return [name for name in CJK_FONTS if name in installed] + ["DejaVu Sans"]


def chart_png(chart: Chart, *, tz: str, locale: str, width: float = 6.4, height: float = 3.2) -> bytes:
    """The chart as a PNG (line, bar, sparkline and funnel as bars; heat maps
    and pies as bars of their first series), numbers labelled as the table shows them."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    blob = chart.blob(tz=tz, locale=locale)
    fig = Figure(figsize=(width, height), dpi=100)
    ax = fig.subplots()
    families = _font_family()
    title_font = {"family": families, "size": 11}
    categories = blob["categories"]
    positions = list(range(len(categories)))
    if blob["kind"] in ("line", "sparkline"):
        for series in blob["series"]:
            values = [v if v is not None else float("nan") for v in series["data"]]
            ax.plot(positions, values, marker="o", markersize=3, label=series["name"])
    else:
        series_list = blob["series"] if blob["kind"] == "bar" else blob["series"][:1]
        width_each = 0.8 / max(1, len(series_list))
        for i, series in enumerate(series_list):
            values = [v if v is not None else 0 for v in series["data"]]
            bars = ax.bar([p + i * width_each for p in positions], values, width=width_each, label=series["name"])
            labels = [format_cell(v, series["kind"], tz=tz, locale=locale) for v in series["data"]]
            ax.bar_label(bars, labels=labels, fontsize=7, fontfamily=families)
    ax.set_xticks(positions)
    ax.set_xticklabels(categories, rotation=45 if len(categories) > 8 else 0, ha="right" if len(categories) > 8 else
                       "center", fontsize=7, fontfamily=families)
    ax.set_title(blob["title"], fontdict=title_font)
    if len(blob["series"]) > 1:
        ax.legend(prop={"family": families, "size": 7})
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


__all__ = ["chart_png"]
