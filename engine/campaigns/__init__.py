"""Campaign evaluation (issue 14): campaigns, their costs, attribution and
KPIs. ``kpis`` forms the numbers, ``stats`` the intervals, ``costs`` the
message prices, ``requests`` turns an approved request into a campaign and
``service`` ties them to the database."""
