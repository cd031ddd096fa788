"""Every numeric request parameter is finite and in range (property tests against the rules)."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.backends.base import QueryControl
from engine.config import check_timeout, load_settings
from engine.errors import ConfigError, InvalidParameters
from engine.rest import MAX_ROWS_PARAM, compile_rest

EXAMPLES = int(os.environ.get("COLONNADE_FUZZ_EXAMPLES", "300"))
numbers = st.one_of(st.floats(), st.integers(-(10**400), 10**400))
texts = st.one_of(st.text(max_size=30), numbers.map(str), st.floats().map(repr))


@settings(max_examples=EXAMPLES, derandomize=True)
@given(value=st.one_of(numbers, texts, st.booleans(), st.none()))
def test_check_timeout_takes_exactly_the_finite_positive_numbers(value: object) -> None:
    try:
        number = float(value.strip()) if isinstance(value, str) else value  # type: ignore[union-attr]
        ok = (
            not isinstance(value, bool)
            and isinstance(number, (int, float))
            and math.isfinite(float(number))
            and number > 0
        )
    except (ValueError, OverflowError):
        ok = False
    if ok:
        assert check_timeout(value) == float(number)  # type: ignore[arg-type]
    else:
        with pytest.raises(InvalidParameters):
            check_timeout(value)


@settings(max_examples=EXAMPLES, derandomize=True)
@given(value=st.one_of(st.text(max_size=25), st.integers(-(10**30), 10**30).map(str)))
def test_rows_limit_takes_exactly_plain_integers_in_range(value: str) -> None:
    import pyarrow as pa

    schema = pa.schema([pa.field("a", pa.int64())])
    ok = value.isascii() and value.isdigit() and int(value) <= MAX_ROWS_PARAM
    for key in ("limit", "offset"):
        if ok:
            assert f"{key.upper()} {int(value)}" in compile_rest("t", schema, [(key, value)]).sql
        else:
            with pytest.raises(InvalidParameters):
                compile_rest("t", schema, [(key, value)])


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0])
def test_notebook_timeouts_are_checked_too(value: float) -> None:
    with pytest.raises(InvalidParameters):
        QueryControl(value)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_config_floats_are_finite(value: str) -> None:
    with pytest.raises(ConfigError, match="query_timeout_s"):
        load_settings(environ={"COLONNADE_LIMITS_QUERY_TIMEOUT_S": value})
