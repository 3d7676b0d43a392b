"""The one definition of the front: repeats merged, the front taken on loss estimates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from search.pareto import config_key, estimated_front, group_repeats


def test_repeats_are_merged_into_their_mean_in_order_of_first_sight():
    keys = ["a", "b", "a", "c", "a"]
    loss = np.array([1.0, 2.0, 3.0, 0.5, 2.0])
    cost = np.array([10.0, 5.0, 14.0, 50.0, 12.0])
    groups = group_repeats(keys, loss, cost)
    assert [g.members for g in groups] == [(0, 2, 4), (1,), (3,)]
    a = groups[0]
    assert (a.observed_loss, a.cost, a.n_measurements) == (2.0, 12.0, 3)


def test_failed_and_non_finite_measurements_belong_to_no_group():
    keys = ["a", "a", "b", "c"]
    loss = np.array([1.0, math.nan, math.inf, 2.0])
    cost = np.array([1.0, 1.0, 2.0, math.nan])
    groups = group_repeats(keys, loss, cost)
    assert [(g.members, g.observed_loss) for g in groups] == [((0,), 1.0)]


def test_a_lucky_draw_merged_with_its_repeat_leaves_the_front():
    """Config x once drew 1.0 (lucky) and then 3.0: its mean 2.0 is beaten by y's 1.5."""
    keys = ["x", "y", "x"]
    loss = np.array([1.0, 1.5, 3.0])
    cost = np.array([10.0, 10.0, 10.0])
    assert [p.members for p in estimated_front(group_repeats(keys, loss, cost))] == [(1,)]


def test_the_front_is_taken_on_the_estimates_not_the_observed_means():
    keys = ["cheap", "lucky", "dear"]
    loss = np.array([3.0, 1.0, 2.0])
    cost = np.array([1.0, 5.0, 10.0])
    groups = group_repeats(keys, loss, cost)
    observed = estimated_front(groups)
    assert [p.members for p in observed] == [(0,), (1,)]  # by increasing cost
    # The model believes "lucky" is really 3.0, no better than the cheaper point: "dear"
    # (1.9) takes its place.
    believed = estimated_front(groups, np.array([2.9, 3.0, 1.9]))
    assert [p.members for p in believed] == [(0,), (2,)]
    assert [(p.estimated_loss, p.observed_loss) for p in believed] == [(2.9, 3.0), (1.9, 2.0)]


def test_a_non_finite_estimate_is_never_on_the_front():
    groups = group_repeats(["a", "b"], np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    assert [p.members for p in estimated_front(groups, np.array([math.nan, 2.0]))] == [(1,)]


def test_empty_input_gives_an_empty_front():
    assert estimated_front(group_repeats([], np.zeros(0), np.zeros(0))) == []


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="equal length"):
        group_repeats(["a"], np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    groups = group_repeats(["a"], np.array([1.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="one value per group"):
        estimated_front(groups, np.array([1.0, 2.0]))


def test_a_configuration_has_one_key_whatever_the_order_or_number_type():
    assert config_key({"b": 10, "a": "x"}) == config_key({"a": "x", "b": 10.0})
    assert config_key({"flag": True}) != config_key({"flag": 1.0})
    assert config_key({"b": 10}) != config_key({"b": 10.5})
