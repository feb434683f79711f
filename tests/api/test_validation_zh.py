"""Validation errors in Chinese (api/validation_zh.py): each type the catalogue words is
one pydantic raises, its {names} are those pydantic's own message fills, and a real
validation of bad input reads in Chinese, the English standing in for a type not
worded."""

from __future__ import annotations

import datetime as dt
import re
import string
from typing import Literal, get_args

import pytest
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, HttpUrl, ValidationError
from pydantic_core import PydanticKnownError
from pydantic_core.core_schema import ErrorType

from ingest_server.api.validation_zh import ZH, messages


def _names(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _pydantic_template(kind: str) -> str:
    """pydantic's own English template for `kind`, its context filled as it demands."""
    ctx: dict[str, object] = {}
    while True:
        try:
            return PydanticKnownError(kind, ctx).message_template  # type: ignore[arg-type]
        except TypeError as exc:  # "GreaterThan: 'gt' required in context", "... a String"
            m = re.search(r"'(\w+)' (required in context|context value must be a String)", str(exc))
            if m is None:
                raise
            ctx[m.group(1)] = 1 if m.group(2).startswith("required") else "1"


@pytest.mark.parametrize("kind", sorted(ZH))
def test_each_type_is_pydantics_and_its_names_are_in_pydantics_context(kind: str) -> None:
    assert kind in get_args(ErrorType)
    assert _names(ZH[kind]) <= _names(_pydantic_template(kind)), kind


class Form(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=2, max_length=3)
    count: int = Field(ge=1, le=5)
    share: float = Field(gt=0, lt=10, allow_inf_nan=False)
    kind: Literal["x", "y"]
    day: dt.date
    at: AwareDatetime
    on: bool
    items: list[int] = Field(max_length=2)
    link: HttpUrl | None = None


BAD = [
    {},
    {"name": "abcd", "count": 0, "share": 0, "kind": "z", "day": "x", "at": "2026-01-01T00:00",
     "on": "maybe", "items": [1, 2, 3], "extra": 1},
    {"name": 1, "count": "x", "share": "y", "day": 5, "at": "bad", "on": [], "items": "no",
     "kind": "x"},
    {"name": "a", "count": 1.5, "share": float("inf"), "kind": "y", "day": "2026-01-01",
     "at": "2026-01-01T00:00Z", "on": True, "items": [], "link": "not a url"},
]  # fmt: skip


@pytest.mark.parametrize("data", BAD)
def test_bad_input_reads_in_chinese_where_each_field_is_named(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as caught:
        Form.model_validate(data)
    errors = caught.value.errors()
    en, zh = messages(errors)
    assert en.count("; ") == zh.count("; ") == len(errors) - 1
    for e, part in zip(errors, zh.split("; "), strict=True):
        field, said = part.split(": ", 1)
        assert field == ".".join(str(x) for x in e["loc"])
        if e["type"] in ZH:
            assert not re.search(r"[A-Za-z]{4,}", said.replace("YYYY", "").replace("true", "")
                                 .replace("false", "").replace("NaN", "")), said  # fmt: skip
            for name in _names(ZH[e["type"]]):  # the limit pydantic checked is the one said
                assert str(e["ctx"][name]) in said
        else:  # not worded (here: url_parsing): the English stands in
            assert said == e["msg"]
    assert {e["type"] for e in errors} - set(ZH) <= {"url_parsing"}
