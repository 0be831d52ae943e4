"""Net Promoter Score: promoters answer 9–10, passives 7–8 (counted in the
denominator), detractors 0–6; NPS = % promoters − % detractors, −100…100."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Nps", "SMALL_SAMPLE"]

#: Below this many answers the score is shown flagged as a small sample.
SMALL_SAMPLE = 30


@dataclass(frozen=True)
class Nps:
    promoters: int
    passives: int
    detractors: int

    @property
    def n(self) -> int:
        return self.promoters + self.passives + self.detractors

    @property
    def score(self) -> float | None:
        """NPS rounded to one decimal; None without answers."""
        if not self.n:
            return None
        return round(100.0 * (self.promoters - self.detractors) / self.n, 1)

    @property
    def small_sample(self) -> bool:
        return self.n < SMALL_SAMPLE
