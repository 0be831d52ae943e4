"""Loyalty: points (积分) on a ledger and membership tiers (会员等级).

:mod:`engine.loyalty.points` earns, spends, reverses and adjusts points;
:mod:`engine.loyalty.tiers` sets every customer's tier set-based;
:mod:`engine.loyalty.tick` is what the scheduler runs once a local day
(points expiry, then tiers). Storage: :mod:`engine.storage.points_repo`
(the ledger's one writer) and :mod:`engine.storage.tiers_repo`.
"""
