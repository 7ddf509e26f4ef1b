"""The ranking's promises, checked on many generated shops (hypothesis)."""

import random
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from coffee_ranker.domain import ranking
from coffee_ranker.domain.ranking import RankKey, score

stars = st.integers(min_value=ranking.MIN_STARS, max_value=ranking.MAX_STARS)
reviews = st.lists(stars, max_size=300)
shop_ids = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)


@st.composite
def shops(draw):
    given_stars = draw(reviews)
    return RankKey(star_sum=sum(given_stars), review_count=len(given_stars), shop_id=draw(shop_ids))


def test_the_prior_is_the_documented_one():
    assert ranking.PRIOR_WEIGHT == 10
    assert Fraction(7, 2) == ranking.PRIOR_MEAN
    assert score(0, 0) == Fraction(7, 2)
    assert score(1, 5) == Fraction(35 + 5, 11)


@given(reviews)
def test_adding_a_five_star_review_never_lowers_the_score(given_stars):
    before = score(len(given_stars), sum(given_stars))
    after = score(len(given_stars) + 1, sum(given_stars) + 5)
    assert after >= before


@given(reviews)
def test_adding_a_one_star_review_never_raises_the_score(given_stars):
    before = score(len(given_stars), sum(given_stars))
    assert score(len(given_stars) + 1, sum(given_stars) + 1) <= before


@given(reviews)
def test_the_score_stays_between_the_prior_and_the_mean(given_stars):
    value = score(len(given_stars), sum(given_stars))
    assert ranking.MIN_STARS <= value <= ranking.MAX_STARS
    if given_stars:
        mean = Fraction(sum(given_stars), len(given_stars))
        assert min(mean, ranking.PRIOR_MEAN) <= value <= max(mean, ranking.PRIOR_MEAN)


@given(st.integers(min_value=1, max_value=3), st.integers(min_value=50, max_value=500))
def test_a_few_five_star_reviews_never_beat_many_averaging_four_point_eight(few, many):
    # Many reviews averaging 4.8: four fives for every four.
    many_sum = (many // 5) * 24 + (many % 5) * 5
    many_stars = RankKey(star_sum=many_sum, review_count=many, shop_id="f" * 32)
    few_fives = RankKey(star_sum=5 * few, review_count=few, shop_id="0" * 32)
    assert many_stars.sort_key() < few_fives.sort_key()
    assert few_fives.comes_after(many_stars)


def test_one_five_star_review_does_not_outrank_fifty_reviews_of_four_point_eight():
    fifty = RankKey(star_sum=240, review_count=50, shop_id="b" * 32)
    one = RankKey(star_sum=5, review_count=1, shop_id="a" * 32)
    assert sorted([one, fifty], key=RankKey.sort_key) == [fifty, one]


@given(st.lists(shops(), max_size=40, unique_by=lambda shop: shop.shop_id))
def test_the_order_is_total_and_independent_of_the_input_order(generated):
    ordered = sorted(generated, key=RankKey.sort_key)
    shuffled = list(generated)
    random.Random(7).shuffle(shuffled)
    assert sorted(shuffled, key=RankKey.sort_key) == ordered
    for earlier, later in zip(ordered, ordered[1:]):
        assert later.comes_after(earlier)
        assert not earlier.comes_after(later)
        # Best first: score never rises; at equal score the review count never rises.
        assert score(later.review_count, later.star_sum) <= score(earlier.review_count, earlier.star_sum)
