"""The chart/table layer and the table exports (issue 14, item 5): what a cell
shows, the machine value it carries, the chart blob drawn from the same rows,
and CSV (UTF-8 with BOM) and xlsx files read back."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from web.charts import Chart, Column, Table, format_cell, plain_value, shown_rows
from web.table_export import filename, to_csv, to_xlsx

TZ = "Asia/Shanghai"


def _table() -> Table:
    return Table("daily", "每日收入", (
        Column("day", "日期"), Column("sends", "发送", "int"), Column("rate", "核销率", "percent"),
        Column("revenue", "收入 (元)", "money"), Column("at", "时间", "datetime"), Column("note", "备注")),
        ((date(2025, 3, 5), 1200, 0.125, Decimal("3456.70"), datetime(2025, 3, 5, 16, 30, tzinfo=UTC), "春季"),
         (date(2025, 3, 6), 0, None, Decimal("0.00"), None, "=HYPERLINK(\"http://x\")")))


def test_cells_show_business_time_and_units_but_keep_machine_values() -> None:
    rows = shown_rows(_table(), tz=TZ, locale="zh")
    first = [(c.text, c.value) for c in rows[0]]
    assert first == [
        ("2025-03-05", "2025-03-05"), ("1,200", 1200), ("12.5%", 0.125), ("3,456.70", "3456.70"),
        # 16:30 UTC is 00:30 the next day in Shanghai: the business day is shown
        ("2025-03-06 00:30", "2025-03-06T00:30:00+08:00"), ("春季", "春季"),
    ]
    assert [(c.text, c.value) for c in rows[1]][2] == ("—", None)


def test_a_key_value_table_formats_each_row_by_its_own_kind() -> None:
    table = Table("headline", "核心指标", (Column("label", "指标"), Column("value", "数值", "auto")),
                  (("核销率", 0.05), ("收入", Decimal("10.5"))), row_kinds=("percent", "money"),
                  row_keys=("redemption_rate", "attributed_revenue"))
    assert [[c.text for c in r] for r in shown_rows(table, tz=TZ, locale="en")] == [["核销率", "5.0%"], ["收入", "10.50"]]
    with pytest.raises(ValueError):
        Table("x", "x", (Column("v", "v", "auto"),), ((1,),))


def test_the_chart_blob_holds_the_tables_numbers() -> None:
    chart = Chart("daily", "line", _table(), "day", ("sends", "revenue"))
    blob = chart.blob(tz=TZ, locale="en")
    assert blob["categories"] == ["2025-03-05", "2025-03-06"]
    assert [(s["key"], s["data"]) for s in blob["series"]] == [("sends", [1200, 0]), ("revenue", [3456.7, 0.0])]
    with pytest.raises(KeyError):
        Chart("bad", "line", _table(), "day", ("nope",))
    with pytest.raises(ValueError):
        Chart("bad", "radar", _table(), "day", ("sends",))


def test_heat_shades_scale_to_the_largest_value() -> None:
    table = Table("cohorts", "留存", (Column("cohort", "同期群"), Column("n", "人数", "int"),
                                      Column("d7", "1 周", "percent")),
                  (("2025-01", 40, 0.5), ("2025-02", 12, 0.25), ("2025-03", 3, None)))
    shades = [[c.heat for c in r] for r in shown_rows(table, tz=TZ, locale="zh", heat=True)]
    assert shades == [[None, None, 9], [None, None, 4], [None, None, None]]  # rates only, not counts


def test_csv_has_a_bom_labels_and_machine_values_and_defuses_formulas() -> None:
    data = to_csv(_table(), tz=TZ)
    assert data.startswith(b"\xef\xbb\xbf")  # Excel reads it as UTF-8
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == ["日期", "发送", "核销率", "收入 (元)", "时间", "备注"]
    assert rows[1] == ["2025-03-05", "1200", "0.125", "3456.70", "2025-03-06T00:30:00+08:00", "春季"]
    assert rows[2][2] == "" and rows[2][5].startswith("'=")


def test_xlsx_cells_are_typed_and_read_back() -> None:
    book = load_workbook(io.BytesIO(to_xlsx(_table(), tz=TZ)))
    sheet = book.active
    assert sheet.title == "daily"
    values = list(sheet.iter_rows(values_only=True))
    assert values[0] == ("日期", "发送", "核销率", "收入 (元)", "时间", "备注")
    assert values[1][:4] == (datetime(2025, 3, 5), 1200, 0.125, 3456.7)
    assert values[1][4] == datetime(2025, 3, 6, 0, 30)  # business wall time
    assert values[2][2] is None and values[2][5].startswith("'=")
    assert sheet["C2"].number_format == "0.0%" and sheet["D2"].number_format == "#,##0.00"


def test_export_file_names_are_ascii() -> None:
    assert filename(_table(), "campaign-春季 promo", "csv") == "campaign-_promo-daily.csv"
    assert plain_value(Decimal("1.10"), "money", tz=TZ) == "1.10"
    assert format_cell(-12.34, "number", tz=TZ, locale="zh") == "-12.34"


def test_a_chart_without_a_number_is_not_drawn() -> None:
    table = Table("cohorts", "留存", (Column("cohort", "同期群"), Column("d7", "1 周", "percent")),
                  (("2025-03", None),))
    assert not Chart("cohorts", "heatmap", table, "cohort", ("d7",)).has_data
    assert Chart("daily", "line", _table(), "day", ("sends",)).has_data
