"""A test form with one field of every type, loaded through the real loader."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.definitions.loader import load_texts
from engine.definitions.specs import FormSpec

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # 2026-03-01 10:00 in Shanghai

ALL_TYPES = """
kind: form
id: all_types
title: 全部类型
fields:
  - {key: text, label: 文本, type: text, max_length: 5, min_length: 2}
  - {key: code, label: 编码, type: text, pattern: "[A-Z]{3}", pattern_message: 三个大写字母}
  - {key: area, label: 长文本, type: textarea}
  - {key: int, label: 整数, type: integer, min: 1, max: 10}
  - {key: num, label: 数字, type: number, min: -1.5, max: 100}
  - {key: money, label: 金额, label_en: Amount, type: money, min: 0}
  - {key: day, label: 日期, type: date, min: today}
  - {key: until, label: 截止, label_en: Until, type: date, after: day}
  - {key: at, label: 时间, type: datetime}
  - {key: sel, label: 单选, type: select, options: [a, b, {value: 3, label: 三}]}
  - {key: multi, label: 多选, type: multiselect, options: [x, y, z]}
  - {key: ok, label: 勾选, type: checkbox}
  - {key: phone, label: 手机, type: phone, phone_region: cn}
  - {key: intl, label: 国际电话, type: phone, phone_region: e164}
  - {key: anyphone, label: 电话, type: phone}
  - {key: mail, label: 邮箱, type: email}
  - {key: site, label: 网址, type: url}
  - {key: cust, label: 顾客, type: customer}
  - {key: owner, label: 负责人, type: user, default: current_user}
  - {key: doc, label: 附件, type: file, accept: [.pdf, image/*], max_size: 1MB}
  - {key: created, label: 创建时间, type: datetime, default: now, readonly: true}
  - {key: lines, label: 明细, type: table, min_rows: 1, max_rows: 3, fields: [
      {key: item, label: 物料, type: text, required: true},
      {key: qty, label: 数量, type: integer, min: 1, required: true},
      {key: gift, label: 赠品, type: text, visible_if: {qty: {gt: 5}}, required_if: {qty: {gt: 5}}}]}
  - {key: kind, label: 类型, type: select, options: [coupon, gift], default: coupon}
  - {key: value, label: 面额, type: money, visible_if: {kind: coupon}, required_if: {kind: coupon}}
  - {key: gift_name, label: 赠品, type: text, visible_if: {kind: gift}, required: true}
  - {key: deadline, label: 期限, type: datetime, before: at}
"""


@pytest.fixture(scope="session")
def form() -> FormSpec:
    return load_texts([("all_types.yaml", ALL_TYPES)]).raise_for_errors().forms["all_types"]
