"""数据预警: conditions on campaign KPIs, checked by the scheduler (issue 14, item 6)."""
