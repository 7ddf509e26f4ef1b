"""How shops are ranked: a Bayesian average of their stars.

A shop with ``n`` reviews whose stars add up to ``sum`` scores

    score = (C * m + sum) / (C + n)

as if every shop started with ``C`` imaginary reviews of ``m`` stars each (the prior). With
``m = 3.5`` and ``C = 10`` a single 5-star review gives 3.64 while fifty reviews averaging 4.8 give
4.58: a shop has to earn a high score with many reviews. A shop without reviews scores ``m``.

Shops are ordered by score (highest first), then by review count (most first), then by id (lowest
first), so the order is total and the same on every backend and every request.

Scores are compared exactly, with integers (``(C*m + sum_a) * (C + n_b)`` against the same for ``b``),
which is why the prior is kept as the integer pair below: ``PRIOR_STAR_TOTAL = C * m``.
"""

from dataclasses import dataclass
from fractions import Fraction
from typing import Tuple

#: C: how many imaginary reviews every shop starts with.
PRIOR_WEIGHT = 10
#: m: the stars of each imaginary review, a middling opinion.
PRIOR_MEAN = Fraction(7, 2)
#: C * m, an integer so scores can be compared exactly in SQL and in Python.
PRIOR_STAR_TOTAL = int(PRIOR_WEIGHT * PRIOR_MEAN)
assert PRIOR_STAR_TOTAL == PRIOR_WEIGHT * PRIOR_MEAN  # noqa: S101 - a guard on the constants above

MIN_STARS = 1
MAX_STARS = 5


def score(review_count: int, star_sum: int) -> Fraction:
    """The exact Bayesian average of a shop."""
    return Fraction(PRIOR_STAR_TOTAL + star_sum, PRIOR_WEIGHT + review_count)


@dataclass(frozen=True)
class RankKey:
    """What a shop's place in the ranking depends on; also what a listing cursor remembers."""

    star_sum: int
    review_count: int
    shop_id: str

    def sort_key(self) -> Tuple[Fraction, int, str]:
        """Ascending sort key that puts the best shop first."""
        return (-score(self.review_count, self.star_sum), -self.review_count, self.shop_id)

    def comes_after(self, other: "RankKey") -> bool:
        """True when this shop is listed after ``other``."""
        return self.sort_key() > other.sort_key()
