"""The engine settings a study gets from what it declares (``engines.search_settings``)."""

from __future__ import annotations

from search.settings import RULES_SPREAD_EVERY
from service.domain import ScalingAxesSpec
from service.orchestration.engines import search_settings
from tests.service.factories import make_spec

AXES = ScalingAxesSpec(n_params="n_params", tokens="tokens")


def test_a_study_with_scaling_axes_gets_spread_points_and_one_without_none():
    assert search_settings(make_spec()).spread_every == 0
    assert search_settings(make_spec(scaling=AXES)).spread_every == RULES_SPREAD_EVERY
    compute_only = make_spec(scaling=ScalingAxesSpec(compute="flops"))
    assert search_settings(compute_only).spread_every == RULES_SPREAD_EVERY


def test_the_study_s_own_search_fields_win():
    own = make_spec(scaling=AXES, search={"n_startup": 4, "spread_every": 0})
    assert search_settings(own).spread_every == 0
    settings = search_settings(make_spec(scaling=AXES, max_trial_cost=5.0))
    assert (settings.seed, settings.max_suggestion_cost, settings.n_startup) == (3, 5.0, 4)
