"""A request's validation errors (pydantic's, as FastAPI raises them) worded in Chinese.

pydantic words its errors in English only; each error also has a `type` and, for most,
a `ctx` with its limits (pydantic-core's error types, stable across 2.x). The console
shows `message_zh` to a Chinese reader and the English `message` beside it as a literal,
so a type missing here still reads: its English message stands in, untranslated.

    where: 字段值的问题 (中文); where: 另一个问题 ...

`where` is the field's path as in the English (`indicators.0.baseline`), since it names
what the request sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# type -> the Chinese, with {name}s from the error's ctx
ZH: dict[str, str] = {
    "missing": "缺少此项",
    "extra_forbidden": "不允许此项 (未知字段)",
    "string_type": "应为文本",
    "string_too_short": "至少 {min_length} 个字符",
    "string_too_long": "至多 {max_length} 个字符",
    "string_pattern_mismatch": "格式不符: 应匹配 {pattern}",
    "too_short": "至少 {min_length} 项",
    "too_long": "至多 {max_length} 项 (现有 {actual_length} 项)",
    "int_type": "应为整数",
    "int_parsing": "应为整数, 无法把文本解析为整数",
    "int_from_float": "应为整数, 不能有小数部分",
    "float_type": "应为数字",
    "float_parsing": "应为数字, 无法把文本解析为数字",
    "finite_number": "应为有限的数字 (不能是无穷大或 NaN)",
    "bool_type": "应为布尔值 (true 或 false)",
    "bool_parsing": "应为布尔值 (true 或 false), 无法解析",
    "greater_than": "应大于 {gt}",
    "greater_than_equal": "应大于或等于 {ge}",
    "less_than": "应小于 {lt}",
    "less_than_equal": "应小于或等于 {le}",
    "multiple_of": "应为 {multiple_of} 的整数倍",
    "literal_error": "应为以下之一: {expected}",
    "enum": "应为以下之一: {expected}",
    "date_type": "应为日期 (YYYY-MM-DD)",
    "date_parsing": "应为日期 (YYYY-MM-DD)",
    "date_from_datetime_parsing": "应为日期 (YYYY-MM-DD)",
    "date_from_datetime_inexact": "应为日期 (YYYY-MM-DD), 不能带时刻",
    "datetime_type": "应为时间 (ISO 8601, 如 2026-11-30T12:00:00Z)",
    "datetime_parsing": "应为时间 (ISO 8601, 如 2026-11-30T12:00:00Z)",
    "datetime_from_date_parsing": "应为时间 (ISO 8601, 如 2026-11-30T12:00:00Z)",
    "timezone_aware": "时间须带时区 (如 Z 或 +08:00)",
    "list_type": "应为列表",
    "dict_type": "应为对象 (键值对)",
    "model_type": "应为对象 (键值对)",
    "model_attributes_type": "应为对象 (键值对)",
    "json_invalid": "不是有效的 JSON",
    "json_type": "不是有效的 JSON",
    "uuid_type": "应为 UUID",
    "uuid_parsing": "应为 UUID",
}


def _one(error: Mapping[str, Any]) -> str:
    template = ZH.get(str(error.get("type")))
    if template is not None:
        try:
            return template.format(**(error.get("ctx") or {}))
        except (KeyError, IndexError):  # a ctx without the name: the English says it
            pass
    return str(error.get("msg")).removeprefix("Value error, ")


def where(error: Mapping[str, Any]) -> str:
    """The field's path, without FastAPI's `query`/`body` root."""
    return ".".join(str(x) for x in error.get("loc", ()) if x not in ("query", "body"))


def messages(errors: Iterable[Mapping[str, Any]]) -> tuple[str, str]:
    """The English and the Chinese message of a request's validation errors."""
    errors = list(errors)
    en = "; ".join(f"{where(e)}: {str(e.get('msg')).removeprefix('Value error, ')}" for e in errors)
    zh = "; ".join(f"{where(e)}: {_one(e)}" for e in errors)
    return en, zh
