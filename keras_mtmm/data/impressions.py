"""Generated recommendation impressions with a known answer: clicks, conversions after a click, and ratings.

The `impressions` source (`configs/recsys_esmm.yaml`). Per row, independently:

- `user_id`: one of `rows / 20` active users (at least 500) drawn once from an id space of 10^9,
  each with a click propensity b_u ~ N(0, 0.7²); `item_id`: one of `rows / 20` active items from
  10^7, each with a fixed `category` (one of 20) and `price` ~ LogNormal(3, 0.5) (ids as strings:
  too many for a vocabulary, hash them); `history`: 1 to 5 distinct categories the user viewed
  recently (`|`-joined);
- clicked ~ Bernoulli(σ(1.5 · [category ∈ POPULAR] + 1.5 · [history ∩ ENGAGED ≠ ∅] + b_u − 1.8)):
  the item's category, the user's history and the user decide the click;
- converted after a click ~ Bernoulli(σ(1.0 − 1.8 · z)), z the price's standard score: the price
  decides the conversion, a signal the click does not have; `converted` (the label of the
  entire space) = clicked and converted after it;
- `rating` (satisfaction, 1 to 5) = 3 + 0.8 · [category ∈ POPULAR] − 0.6 · z + N(0, 0.3²),
  observed only for conversions (empty elsewhere: unlabelled).

So `pCVR = p(converted | clicked)` is learnable only from the clicked rows' outcomes, which ESMM
(`depends_on: ctr`) reaches through `pCTCVR = pCTR × pCVR` on every impression.
"""

from __future__ import annotations

import numpy as np

NUM_CATEGORIES = 20
POPULAR = tuple(range(0, 6))  # categories c0..c5
ENGAGED = tuple(range(10, 14))  # c10..c13
PRICE_MEAN, PRICE_SIGMA = 3.0, 0.5  # of log(price)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate_impressions(num_examples: int, seed: int) -> dict[str, np.ndarray]:
    """The impressions table (columns above), deterministic in `seed`; also `p_click` and `p_convert`
    (the true probabilities, for tests)."""
    rng = np.random.default_rng(seed)
    n = int(num_examples)
    active = max(500, n // 20)
    user_ids, item_ids = rng.choice(10**9, size=active, replace=False), rng.choice(10**7, size=active, replace=False)
    propensity = rng.normal(0.0, 0.7, size=active)
    item_category = rng.integers(NUM_CATEGORIES, size=active)
    item_log_price = rng.normal(PRICE_MEAN, PRICE_SIGMA, size=active)
    user, item = rng.integers(active, size=n), rng.integers(active, size=n)
    category, log_price = item_category[item], item_log_price[item]
    histories = [rng.choice(NUM_CATEGORIES, size=int(rng.integers(1, 6)), replace=False) for _ in range(n)]
    popular = np.isin(category, POPULAR).astype(np.float64)
    engaged = np.array([np.isin(h, ENGAGED).any() for h in histories], dtype=np.float64)
    z = (log_price - PRICE_MEAN) / PRICE_SIGMA
    p_click = sigmoid(1.5 * popular + 1.5 * engaged + propensity[user] - 1.8)
    p_convert = sigmoid(1.0 - 1.8 * z)
    clicked = rng.random(n) < p_click
    converted = clicked & (rng.random(n) < p_convert)
    rating = np.clip(3.0 + 0.8 * popular - 0.6 * z + rng.normal(0.0, 0.3, size=n), 1.0, 5.0)
    return {
        "user_id": np.array([f"u{u}" for u in user_ids[user]], dtype=object),
        "item_id": np.array([f"i{i}" for i in item_ids[item]], dtype=object),
        "category": np.array([f"c{c}" for c in category], dtype=object),
        "history": np.array(["|".join(f"c{c}" for c in h) for h in histories], dtype=object),
        "price": np.exp(log_price).astype(np.float32),
        "clicked": np.where(clicked, "yes", "no").astype(object),
        "converted": np.where(converted, "yes", "no").astype(object),
        "rating": np.where(converted, rating, np.nan).astype(np.float32),
        "p_click": p_click.astype(np.float32),
        "p_convert": p_convert.astype(np.float32),
    }
