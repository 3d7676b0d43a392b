"""search.space: spec validation, params validation, transforms and their round trips."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from search.errors import InvalidParamsError, InvalidSpaceError, SearchError
from search.space import (
    INT_GRID_LIMIT,
    INT_LIMIT,
    ChoiceParam,
    IntParam,
    LinearParam,
    LogitParam,
    LogParam,
    Pow2Param,
    SearchSpace,
)
from tests.search import strategies as sst

PROPERTY = settings(max_examples=200, deadline=None)
LIGHT = settings(max_examples=60, deadline=None)  # whole-space properties with little arithmetic
KINDS = sorted(sst.KIND_STRATEGIES)


def _space(*params: Any) -> SearchSpace:
    return SearchSpace(params=list(params))


def lm_space() -> SearchSpace:
    """A space like a language-model study's: one parameter of every kind."""
    return _space(
        LogParam(name="lr", center=3e-4, min=1e-6, max=1e-1),
        LinearParam(name="mix", center=0.1, scale=0.05),
        LogitParam(name="beta2", center=0.95),
        IntParam(name="width", center=512, multiple_of=64, max=8192),
        IntParam(name="warmup", center=1000, log=False, scale=200, min=0),
        Pow2Param(name="batch_size", center=256, min=16),
        ChoiceParam(name="optimizer", choices=["adamw", "lion", "sgd"]),
    )


def assert_same_params(space: SearchSpace, got: dict, want: dict) -> None:
    """Equal params: exact for ints/pow2/choices, 1e-12 relative for floats."""
    assert list(got) == space.names
    for param in space.params:
        g, w = got[param.name], want[param.name]
        if isinstance(param, LinearParam):
            assert type(g) is float
            # v - center cancels digits of a small v; below 1e-300 scales x underflows.
            tol = 1e-12 * max(abs(w), abs(param.center)) + 1e-300 * param.scale
            assert abs(g - w) <= tol, (param, g, w)
        elif isinstance(param, LogParam | LogitParam):
            assert type(g) is float
            assert abs(g - w) <= 1e-12 * abs(w), (param, g, w)
        elif isinstance(param, IntParam | Pow2Param):
            assert type(g) is int and g == w, (param, g, w)
        else:
            assert sst.choice_key(g) == sst.choice_key(w), (param, g, w)
            assert any(g is choice for choice in param.choices)  # the stored choice itself


# -- round trips (the contract's central promise) ---------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@PROPERTY
@given(data=st.data())
def test_round_trip_every_kind(kind: str, data: st.DataObject) -> None:
    param = data.draw(sst.params_of_kind(kind, "p"))
    space = _space(param)
    value = data.draw(sst.values_of(param))
    x = space.to_internal({"p": value})
    assert x.shape == (space.dim,) and x.dtype == np.float64 and np.isfinite(x).all()
    assert_same_params(space, space.from_internal(x), {"p": value})


@PROPERTY
@given(case=sst.space_and_params())
def test_round_trip_mixed_spaces(case: tuple[SearchSpace, dict]) -> None:
    space, params = case
    x = space.to_internal(params)
    assert_same_params(space, space.from_internal(x), params)
    # The batch path agrees with the single one.
    many = space.to_internal_many([params, params])
    np.testing.assert_array_equal(many, np.stack([x, x]))
    for row in space.from_internal_many(many):
        assert_same_params(space, row, params)


@PROPERTY
@given(space=sst.spaces(), data=st.data())
def test_from_internal_snaps_anything(space: SearchSpace, data: st.DataObject) -> None:
    big = st.one_of(st.floats(-30.0, 30.0), st.floats(allow_nan=False))  # +-inf, 1e308 too
    x = np.array(data.draw(st.lists(big, min_size=space.dim, max_size=space.dim)))
    params = space.from_internal(x)
    assert space.validate_params(params) == params  # feasible, already normalised
    projected = space.project_internal(x)
    assert np.isfinite(projected).all()
    np.testing.assert_array_equal(space.project_internal(projected), projected)  # idempotent
    lo, hi = space.internal_bounds()
    assert np.all(lo <= projected) and np.all(projected <= hi)
    # project = to_internal . from_internal: exactly on grid and one-hot dims; on float dims
    # clipping replaces the round trip, so compare there in value space (near the ends of a
    # logit range one float step of the value is a large step of its logit).
    grid = _grid_dims(space)
    np.testing.assert_array_equal(projected[grid], space.to_internal(params)[grid])
    assert_same_params(space, space.from_internal(projected), params)


@LIGHT
@given(space=sst.spaces())
def test_json_round_trip(space: SearchSpace) -> None:
    dumped = space.model_dump(mode="json")
    again = SearchSpace.model_validate(json.loads(json.dumps(dumped)))
    assert again == space
    assert again.model_dump(mode="json") == dumped


@LIGHT
@given(space=sst.spaces())
def test_center_maps_to_origin(space: SearchSpace) -> None:
    x = space.to_internal(space.center())
    cont = space.continuous_mask
    np.testing.assert_array_equal(x[cont], 0.0)
    for block, param in zip(space.choice_blocks, _choices(space), strict=True):
        keys = [sst.choice_key(choice) for choice in param.choices]
        one_hot = np.eye(len(keys))[keys.index(sst.choice_key(param.center))]
        np.testing.assert_array_equal(x[block], one_hot)


def _choices(space: SearchSpace) -> list[ChoiceParam]:
    return [p for p in space.params if isinstance(p, ChoiceParam)]


def _grid_dims(space: SearchSpace) -> np.ndarray:
    """Mask of the dims that are rounded (int, pow2) or one-hot."""
    floats = [isinstance(p, LogParam | LinearParam | LogitParam) for p in space.params]
    sizes = [p.n_dims for p in space.params]
    return ~np.repeat(floats, sizes)


# -- layout --------------------------------------------------------------------------------


def test_layout_of_a_mixed_space() -> None:
    space = lm_space()
    assert space.names == ["lr", "mix", "beta2", "width", "warmup", "batch_size", "optimizer"]
    assert space.dim == 9
    assert space.choice_blocks == [slice(6, 9)]
    np.testing.assert_array_equal(space.continuous_mask, [True] * 6 + [False] * 3)
    lo, hi = space.internal_bounds()
    np.testing.assert_allclose(lo[0], math.log(1e-6 / 3e-4))
    np.testing.assert_allclose(hi[0], math.log(1e-1 / 3e-4))
    np.testing.assert_array_equal(lo[1:3], -np.inf)
    np.testing.assert_array_equal(hi[1:3], np.inf)
    np.testing.assert_allclose(hi[3], math.log(8192 / 512))
    np.testing.assert_allclose(lo[4], -1000 / 200)
    np.testing.assert_allclose(lo[5], -4.0)  # 16 is four halvings below 256
    np.testing.assert_array_equal(lo[6:], 0.0)
    np.testing.assert_array_equal(hi[6:], 1.0)


def test_internal_coordinates_follow_the_formula() -> None:
    space = lm_space()
    x = space.to_internal(
        {"lr": 3e-3, "mix": 0.2, "beta2": 0.99, "width": 1024, "warmup": 600,
         "batch_size": 1024, "optimizer": "lion"}
    )  # fmt: skip
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    want = [math.log(10), 2.0, logit(0.99) - logit(0.95), math.log(2), -2.0, 2.0, 0, 1, 0]
    np.testing.assert_allclose(x, want, rtol=1e-12, atol=1e-12)


def test_from_internal_rounds_and_clips() -> None:
    space = lm_space()
    x = np.zeros(space.dim)
    x[0] = 50.0  # far above max lr
    x[3] = math.log(700 / 512)  # width 700 -> nearest multiple of 64 is 704
    x[4] = -100.0  # warmup below min
    x[5] = 1.6  # 256 * 2**1.6 -> rounds to 2**10
    x[6:] = [0.1, 0.2, 0.7]
    params = space.from_internal(x)
    assert params["lr"] == 1e-1
    assert params["width"] == 704
    assert params["warmup"] == 0
    assert params["batch_size"] == 1024
    assert params["optimizer"] == "sgd"


# -- params validation -----------------------------------------------------------------------


def _params(**overrides: Any) -> dict[str, Any]:
    base = {"lr": 1e-3, "mix": 0.0, "beta2": 0.9, "width": 256, "warmup": 100,
            "batch_size": 64, "optimizer": "adamw"}  # fmt: skip
    return {**base, **overrides}


@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        (_params(lrr=1e-3), r"unknown parameter 'lrr'; did you mean 'lr'"),
        ({k: v for k, v in _params().items() if k != "mix"}, r"missing value for \['mix'\]"),
        (_params(lr="1e-3"), r"'lr' \(log\): expected a number, got '1e-3'"),
        (_params(lr=True), r"'lr' \(log\): expected a number, got True"),
        (_params(lr=0.0), r"'lr' \(log\): 0.0 is outside .*must be > 0"),
        (_params(lr=0.5), r"'lr' \(log\): 0.5 is above max=0.1"),
        (_params(lr=math.nan), r"'lr' \(log\): nan is outside"),
        (_params(mix=math.inf), r"'mix' \(linear\): inf is outside"),
        (_params(beta2=1.0), r"'beta2' \(logit\): 1.0 is outside .*must be in \(0, 1\)"),
        (_params(width=3.5), r"'width' \(int\): expected an integer, got 3.5"),
        (_params(width=300), r"'width' \(int\): 300 is not a multiple of 64; use 256 or 320"),
        (_params(width=16384), r"'width' \(int\): 16384 is above max=8192"),
        (_params(width=False), r"'width' \(int\): expected an integer, got False"),
        (_params(warmup=-64), r"'warmup' \(int\): -64 is below min=0"),
        (_params(batch_size=48), r"'batch_size' \(pow2\): 48 is not a power of two; use 32 or 64"),
        (_params(batch_size=8), r"'batch_size' \(pow2\): 8 is below min=16"),
        (_params(optimizer="adam"), r"'optimizer' \(choice\): 'adam' is not one of the choices"),
    ],
)
def test_invalid_params_say_what_to_fix(params: dict, pattern: str) -> None:
    space = lm_space()
    with pytest.raises(InvalidParamsError, match=pattern):
        space.validate_params(params)
    with pytest.raises(InvalidParamsError, match=pattern):
        space.to_internal(params)


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(InvalidParamsError) as info:
        lm_space().validate_params(_params(lr=-1.0, width=1.5, optimizer=None, extra=1))
    message = str(info.value)
    for name in ("'lr'", "'width'", "'optimizer'", "'extra'"):
        assert name in message


def test_validate_params_normalises() -> None:
    space = lm_space()
    got = space.validate_params(
        {**_params(mix=1, width=np.int64(512), batch_size=256.0, lr=np.float32(0.01))}
    )
    assert got["mix"] == 1.0 and type(got["mix"]) is float
    assert got["width"] == 512 and type(got["width"]) is int
    assert got["batch_size"] == 256 and type(got["batch_size"]) is int
    assert type(got["lr"]) is float
    assert list(got) == space.names


def test_validate_params_refuses_non_mappings() -> None:
    with pytest.raises(InvalidParamsError, match="must be a mapping"):
        lm_space().validate_params([("lr", 1e-3)])  # type: ignore[arg-type]


def test_choice_values_match_by_type() -> None:
    space = _space(ChoiceParam(name="c", choices=[1, "1", True, 2.5]))
    assert space.validate_params({"c": 1.0}) == {"c": 1}  # numbers match by value
    assert space.validate_params({"c": True}) == {"c": True}
    assert type(space.validate_params({"c": "1"})["c"]) is str
    with pytest.raises(InvalidParamsError, match="not one of the choices"):
        space.validate_params({"c": 2})


# -- spec validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ({"kind": "log", "name": "lr", "center": 0.0}, r"'lr'.*center 0.0 is outside .*> 0"),
        ({"kind": "log", "name": "lr", "center": 1e-3, "min": -1.0}, r"'lr'.*min -1.0 is outside"),
        ({"kind": "log", "name": "lr", "center": 1e-3, "max": 1e-4}, r"'lr'.*center .* above max"),
        ({"kind": "log", "name": "lr", "center": 1e-3, "scale": 0.0}, r"'lr'.*scale must be in"),
        ({"kind": "log", "name": "lr", "center": 1e-3, "scale": -1.0}, r"'lr'.*scale must be in"),
        ({"kind": "log", "name": "lr", "center": math.nan}, r"'lr'.*finite number"),
        ({"kind": "linear", "name": "m", "center": math.inf}, r"'m'.*finite number"),
        ({"kind": "linear", "name": "m", "center": 0.5, "min": 1.0}, r"'m'.*center 0.5 is below"),
        ({"kind": "linear", "name": "m", "center": 1, "min": 1, "max": 1}, r"'m'.*min.*< max"),
        ({"kind": "linear", "name": "m", "center": "0.5"}, r"'m'.*expected a number"),
        ({"kind": "linear", "name": "m", "center": 0.5, "step": 1}, r"'m'.*step.*not permitted"),
        ({"kind": "logit", "name": "b", "center": 1.0}, r"'b'.*center 1.0 is outside .*\(0, 1\)"),
        ({"kind": "logit", "name": "b", "center": 0.5, "max": 1.5}, r"'b'.*max 1.5 is outside"),
        ({"kind": "int", "name": "w", "center": 100, "multiple_of": 64}, r"'w'.*use 64 or 128"),
        ({"kind": "int", "name": "w", "center": 0}, r"'w'.*center 0 is outside .*> 0"),
        ({"kind": "int", "name": "w", "center": 4, "min": 0}, r"'w'.*min 0 is outside .*> 0"),
        ({"kind": "int", "name": "w", "center": 2.5}, r"'w'.*expected an integer"),
        ({"kind": "int", "name": "w", "center": 4, "multiple_of": 0}, r"'w'.*multiple_of"),
        ({"kind": "pow2", "name": "bs", "center": 48}, r"'bs'.*center 48 is not a power of two"),
        ({"kind": "pow2", "name": "bs", "center": 64, "max": 100}, r"'bs'.*max 100 is not a pow"),
        ({"kind": "pow2", "name": "bs", "center": 0}, r"'bs'.*center 0 is outside"),
        ({"kind": "choice", "name": "o", "choices": []}, r"'o'.*choices must not be empty"),
        ({"kind": "choice", "name": "o", "choices": ["a", "a"]}, r"'o'.*unique"),
        ({"kind": "choice", "name": "o", "choices": [1, 1.0]}, r"'o'.*unique"),
        ({"kind": "choice", "name": "o", "choices": ["a"], "center": "b"}, r"'o'.*not one of"),
        ({"kind": "choice", "name": "o", "choices": [math.nan]}, r"'o'.*finite"),
        ({"kind": "choice", "name": "", "choices": ["a"]}, r"name must be a non-empty"),
        ({"kind": "cubic", "name": "z", "center": 1.0}, r"'z': kind must be one of"),
    ],
)
def test_invalid_specs_name_the_parameter(spec: dict, pattern: str) -> None:
    with pytest.raises(InvalidSpaceError, match=pattern):
        SearchSpace.model_validate({"params": [spec]})


def test_invalid_space_level_specs() -> None:
    with pytest.raises(InvalidSpaceError, match="at least one parameter"):
        SearchSpace(params=[])
    lr = LogParam(name="lr", center=1e-3)
    with pytest.raises(InvalidSpaceError, match="'lr' is defined twice"):
        SearchSpace(params=[lr, LinearParam(name="lr", center=0.0)])
    with pytest.raises(InvalidSpaceError, match="seed: Extra inputs are not permitted"):
        SearchSpace.model_validate({"params": [lr], "seed": 1})


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: LogParam(name="lr", center=-1.0), id="param"),
        pytest.param(lambda: SearchSpace(params=[]), id="space"),
        pytest.param(lambda: SearchSpace.model_validate({"params": 3}), id="validate"),
        pytest.param(lambda: SearchSpace.model_validate_json('{"params": []}'), id="json"),
    ],
)
def test_a_spec_that_cannot_be_searched_raises_invalid_space_error(build: Any) -> None:
    """What search/errors.py promises, and still a ValueError for callers that catch one;
    never pydantic's ValidationError, whose type a caller of search/ should not need."""
    with pytest.raises(InvalidSpaceError) as info:
        build()
    assert isinstance(info.value, SearchError)
    assert isinstance(info.value, ValueError)
    assert not isinstance(info.value, ValidationError)
    assert info.value.__cause__ is None  # the message says it all, without pydantic's


def test_every_problem_of_a_spec_is_reported_at_once() -> None:
    spec = {
        "params": [
            {"kind": "log", "name": "lr", "center": 1e-3, "scale": 0.0},
            {"kind": "int", "name": "w", "center": 2.5},
        ]
    }
    with pytest.raises(InvalidSpaceError, match=r"'lr'.*scale must be in.*; .*'w'.*integer"):
        SearchSpace.model_validate(spec)


def test_specs_are_frozen() -> None:
    param = LogParam(name="lr", center=1e-3)
    with pytest.raises(ValidationError, match="frozen"):
        param.center = 1.0  # type: ignore[misc]


def test_choice_center_defaults_to_first_choice() -> None:
    assert ChoiceParam(name="o", choices=["b", "a"]).center == "b"


# -- warm starts -----------------------------------------------------------------------------


def test_with_center_moves_the_origin() -> None:
    space = lm_space()
    moved = space.with_center({"lr": 1e-2, "batch_size": 512, "optimizer": "sgd"})
    assert moved.center() == {**space.center(), "lr": 1e-2, "batch_size": 512, "optimizer": "sgd"}
    x = moved.to_internal(moved.center())
    np.testing.assert_array_equal(x[moved.continuous_mask], 0.0)
    assert moved.internal_bounds()[1][0] == pytest.approx(math.log(1e-1 / 1e-2))
    with pytest.raises(InvalidParamsError, match="unknown"):
        space.with_center({"nope": 1})
    with pytest.raises(InvalidParamsError, match="above max"):
        space.with_center({"lr": 1.0})
    with pytest.raises(InvalidParamsError, match="must be a mapping"):
        space.with_center([("lr", 1e-3)])  # type: ignore[arg-type]


# -- shapes and vectorised paths -------------------------------------------------------------


def test_vectorised_paths_agree_with_single_ones() -> None:
    space = lm_space()
    rng = np.random.default_rng(0)
    x = rng.normal(scale=3.0, size=(200, space.dim))
    many = space.from_internal_many(x)
    assert many == [space.from_internal(row) for row in x]
    projected = space.project_internal(x)
    assert projected.shape == (200, space.dim)
    np.testing.assert_array_equal(projected[7], space.project_internal(x[7]))
    np.testing.assert_allclose(projected, space.to_internal_many(many), rtol=1e-12, atol=1e-12)
    assert space.to_internal_many([]).shape == (0, space.dim)
    assert space.from_internal_many(np.empty((0, space.dim))) == []


def test_bad_internal_vectors_are_refused() -> None:
    space = lm_space()
    with pytest.raises(InvalidParamsError, match=r"shape \(9,\)"):
        space.from_internal(np.zeros(3))
    with pytest.raises(InvalidParamsError, match=r"shape \(n, 9\)"):
        space.from_internal_many(np.zeros(9))
    with pytest.raises(InvalidParamsError, match="NaN"):
        space.project_internal(np.full((2, 9), np.nan))


# -- snapping is to the nearest feasible value ---------------------------------------------


@PROPERTY
@given(param=st.one_of(sst.int_params(), sst.pow2_params()), x=st.floats(-60.0, 60.0))
def test_grid_values_snap_to_the_nearest_grid_point(param: Any, x: float) -> None:
    space = _space(param)
    value = space.from_internal(np.array([x]))["p"]
    lo, hi = space.internal_bounds()
    if not lo[0] < x < hi[0]:
        return  # clipped to a bound: covered by test_from_internal_snaps_anything
    if isinstance(param, Pow2Param):  # nearest in log2: within half a doubling
        target = math.log2(param.center) + x * param.scale
        assert abs(math.log2(value) - target) <= 0.5 + 1e-9 or value in (1, 2**62)
    else:  # nearest multiple in value space: within half a step
        t_center = math.log(param.center) if param.log else param.center
        target = t_center + x * param.scale
        target = math.exp(min(target, 700.0)) if param.log else target
        limit = min(INT_LIMIT, INT_GRID_LIMIT * param.multiple_of)  # representable range
        inside = param.multiple_of <= abs(target) <= limit
        assert abs(value - target) <= param.multiple_of / 2 * (1 + 1e-9) or not inside


def test_choice_argmax_takes_the_first_of_ties() -> None:
    space = _space(ChoiceParam(name="c", choices=["a", "b", "c"]))
    rows = space.from_internal_many(np.array([[0.5, 0.5, 0.1], [-np.inf, 3.0, np.inf], [0, 0, 0]]))
    assert [row["c"] for row in rows] == ["a", "c", "a"]
    np.testing.assert_array_equal(space.project_internal(np.array([0.2, 0.9, 0.9])), [0, 1, 0])


@pytest.mark.parametrize(
    ("param", "value"),
    [
        (LogParam(name="p", center=1e-300, scale=1e-150), 1e300),
        (LogParam(name="p", center=1e300, scale=1e150, min=1e-300), 1e-300),
        (LinearParam(name="p", center=-1e150, scale=1e-150), 1e150),
        (LinearParam(name="p", center=1e150, scale=1e150), 5e-324),
        (LogitParam(name="p", center=1e-300, scale=1e-150), math.nextafter(1.0, 0.0)),
        (LogitParam(name="p", center=0.5), 1e-300),
        (IntParam(name="p", center=1, scale=1e-150), 10**12),
        (IntParam(name="p", center=10**15, multiple_of=1000, scale=0.01), 1000),
        (IntParam(name="p", center=-(10**12), log=False, scale=1e-3), 10**12),
        (IntParam(name="p", center=999_999_999_999, log=False, scale=1e12), -(10**12)),
        (Pow2Param(name="p", center=1, scale=1e-150), 2**62),
        (Pow2Param(name="p", center=2**62, scale=1e150), 1),
    ],
)
def test_round_trip_at_the_ends_of_the_range(param: Any, value: Any) -> None:
    space = _space(param)
    assert_same_params(space, space.from_internal(space.to_internal({"p": value})), {"p": value})


# -- interfaces other packages rely on -------------------------------------------------------


def test_from_internal_accepts_sequences_and_leaves_inputs_alone() -> None:
    space = lm_space()
    params = _params(batch_size=128.0)
    snapshot = dict(params)
    x = space.to_internal(params)
    assert params == snapshot  # not normalised in place
    assert space.from_internal(x.tolist()) == space.from_internal(x)
    x_copy = x.copy()
    space.project_internal(x)
    np.testing.assert_array_equal(x, x_copy)


def test_space_embeds_in_other_models_and_json_schema() -> None:
    from pydantic import BaseModel

    class StudyCreate(BaseModel):  # the shape a service schema takes
        space: SearchSpace

    body = {"space": lm_space().model_dump(mode="json")}
    assert StudyCreate.model_validate(body).space == lm_space()
    schema = StudyCreate.model_json_schema()
    assert set(schema["$defs"]) >= {"SearchSpace", "LogParam", "ChoiceParam", "Pow2Param"}
    with pytest.raises(ValidationError, match="parameter 'lr'"):
        StudyCreate.model_validate(
            {"space": {"params": [{"kind": "log", "name": "lr", "center": -1}]}}
        )


def test_importing_the_space_does_not_import_torch() -> None:
    code = "import sys, search.space; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
