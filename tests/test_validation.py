"""gcnn.validation: every check passes good values through and names bad ones in one line."""
from __future__ import annotations

import re

import pytest

from gcnn.validation import check_choice, check_int, check_number, invalid


def test_invalid_formats_name_value_and_expectation():
    error = invalid("stride", 0, "an integer >= 1")
    assert isinstance(error, ValueError)
    assert str(error) == "stride=0 is not valid; expected an integer >= 1"


@pytest.mark.parametrize("value,choices", [("max", ("max", "mean")), (3, [1, 3]), (None, [None, "x"])])
def test_check_choice_accepts_a_choice(value, choices):
    assert check_choice("mode", value, choices) is value


@pytest.mark.parametrize("value,message", [
    ("avg", "mode='avg' is not valid; expected one of ['max', 'mean']"),
    ("MAX", "mode='MAX' is not valid; expected one of ['max', 'mean']"),
    (None, "mode=None is not valid; expected one of ['max', 'mean']"),
])
def test_check_choice_rejects_others(value, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check_choice("mode", value, ("max", "mean"))


def test_check_choice_does_not_confuse_bool_and_int():
    with pytest.raises(ValueError, match=r"^flag=True is not valid; expected one of \[1, 0\]$"):
        check_choice("flag", True, [1, 0])


@pytest.mark.parametrize("value,minimum", [(0, 0), (1, 1), (7, 1), (-3, -5)])
def test_check_int_accepts(value, minimum):
    assert check_int("n", value, minimum) == value


@pytest.mark.parametrize("value", [0, -1, 1.0, "2", True, None])
def test_check_int_rejects(value):
    with pytest.raises(ValueError, match=f"^{re.escape(f'n={value!r} is not valid; expected an integer >= 1')}$"):
        check_int("n", value, 1)


@pytest.mark.parametrize("value,kwargs", [(0, {}), (0.5, {"strict": True}), (2, {"minimum": 2}),
                                          (0.99, {"below": 1.0})])
def test_check_number_accepts(value, kwargs):
    assert check_number("lr", value, **kwargs) == value


@pytest.mark.parametrize("value,kwargs,expected", [
    (-0.1, {}, "a number >= 0"),
    (0, {"strict": True}, "a number > 0"),
    (1.0, {"below": 1.0}, "a number >= 0 and < 1"),
    (float("nan"), {}, "a number >= 0"),
    (float("inf"), {}, "a number >= 0"),
    (True, {}, "a number >= 0"),
    ("0.1", {}, "a number >= 0"),
])
def test_check_number_rejects(value, kwargs, expected):
    with pytest.raises(ValueError, match=f"^{re.escape(f'lr={value!r} is not valid; expected {expected}')}$"):
        check_number("lr", value, **kwargs)
