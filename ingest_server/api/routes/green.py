"""The green-factory and GHG entries of a period (绿色工厂 / 温室气体), for the console:
what the enterprise entered, who entered it and when, and the indicator sheet and GHG
summary its figures give (docs/green-ghg.md).

    GET /api/v1/enterprises/{e}/green?from&to   the entries in force, their trail, the sheet
    PUT /api/v1/enterprises/{e}/green           enter the period's values (a new row)

The body of PUT is the file of `ingest-server green set` (cli/green.py) with the period
and a note: checked the same way (the models and `entry_problems` of evidence/green.py),
a 422 naming the field before anything is stored. It is JSON, or YAML as the CLI's file
is (`Content-Type: application/yaml` or `text/yaml`): `YamlRoute` reads a YAML body the
way the CLI reads its file (edge_agent/contract/yaml12.py: YAML 1.2 booleans and
numbers, a safe loader) and hands the document on as FastAPI hands on a JSON one, so
both are checked by the same model and refused with the same 422s; text that is not YAML
is a 422 naming its line, in English and Chinese. Entering needs an enterprise or admin
account; a verifier reads. The sheet and the summary are those the signed report would
carry (its `green` and `ghg` blocks), computed from the unsigned report of the period,
with the enterprise's generation meters the console offers as PV meters.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Coroutine
from email.message import Message
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from edge_agent.contract.yaml12 import load_yaml, yaml_problem
from ingest_server.api.auth import ApiError
from ingest_server.api.deps import Enterprise, Reading, writing
from ingest_server.api.params import Day, check_period
from ingest_server.evidence.green import GreenEntries, PeriodEntries, entry_problems
from ingest_server.evidence.green import notes_zh as green_notes_zh
from ingest_server.evidence.report import Request as ReportRequest
from ingest_server.evidence.report import make_report
from ingest_server.repo import green as green_repo

# the media types of a YAML body (RFC 9512's and the ones in use before it)
YAML_TYPES = frozenset(("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"))
_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlBodyError(ApiError):
    """A YAML body that is not YAML (or not text): 422 naming the line, in English and
    Chinese (a problem with its fields is FastAPI's 422, as for JSON)."""

    def __init__(self, message: str, message_zh: str) -> None:
        super().__init__(422, "invalid_parameter", f"body: {message}", f"请求体: {message_zh}")


class _YamlRequest(Request):
    """A request whose YAML body FastAPI reads as it reads JSON: `json()` is the parsed
    document (dates stay dates, as in the CLI's file, for the model to take or refuse)."""

    def __init__(self, request: Request, body: bytes, doc: Any) -> None:
        scope = dict(request.scope)
        headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
        scope["headers"] = [*headers, (b"content-type", b"application/json")]
        super().__init__(scope, request.receive)
        self._body = body  # read already: the bytes as sent
        self._doc = doc

    async def json(self) -> Any:
        return self._doc


def _is_yaml(content_type: str | None) -> bool:
    if not content_type:
        return False
    m = Message()
    m["content-type"] = content_type
    return m.get_content_type() in YAML_TYPES


def parse_yaml_body(body: bytes) -> Any:
    """The document of a YAML body; YamlBodyError naming the line when it is none. An
    alias (*name) is refused: the file never needs one, and a few aliases of aliases
    expand into a document of billions of nodes."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlBodyError(
            f"byte {exc.start} is not UTF-8: send the YAML as UTF-8 text",
            f"第 {exc.start} 个字节不是 UTF-8 编码: 请以 UTF-8 文本发送",
        ) from None
    try:
        for event in yaml.parse(text, Loader=_SAFE_LOADER):
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1 if event.start_mark else 0
                raise YamlBodyError(
                    f"line {line}: an alias (*{event.anchor}) is not accepted: write the "
                    "values out",
                    f"第 {line} 行: 不接受别名 (*{event.anchor}), 请直接写出数值",
                )
        return load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"第 {mark.line + 1} 行第 {mark.column + 1} 列" if mark else "文本"
        raise YamlBodyError(
            yaml_problem(exc),
            f"{where}不是有效的 YAML: 请检查该处的缩进、冒号、引号和括号",
        ) from None
    except RecursionError:
        raise YamlBodyError("nested too deeply to read", "嵌套层数过多, 无法读取") from None


class YamlRoute(APIRoute):
    """A route whose body may also be YAML: parsed here, then checked by the route's model
    as a JSON body is (the OpenAPI schema states both media types: `YAML_BODY`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            if _is_yaml(request.headers.get("content-type")):
                body = await request.body()
                # an empty body stays empty: FastAPI answers "Field required" as for JSON;
                # a document of only comments is an empty mapping, as the CLI reads it
                if body:
                    doc = parse_yaml_body(body)
                    request = _YamlRequest(request, body, {} if doc is None else doc)
            return await handler(request)

        return route


router = APIRouter(prefix="/api/v1", tags=["green"], route_class=YamlRoute)

Entering = Annotated[Enterprise, Depends(writing("enter green-factory values of"))]


class GreenIn(PeriodEntries):
    """The values of a period: `ingest-server green set`'s file, its period and a note."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    date_from: Day = Field(alias="from")
    date_to: Day = Field(alias="to")
    note: str = Field(default="", max_length=2000)


class GreenEntryPublic(BaseModel):
    """A row of the trail: what was entered for the period, by whom and when."""

    id: int
    period_from: dt.date
    period_to: dt.date
    entries: dict[str, Any]
    process: list[dict[str, Any]]
    note: str
    entered_at: dt.datetime
    entered_by: str


class GenerationMeterPublic(BaseModel):
    """A meter of role `generation` (on-site PV): what `pv.meters` may name."""

    id: str
    name: str
    name_en: str | None
    site: str
    unit: str
    quantity: float | None  # in the period


class GreenPublic(BaseModel):
    enterprise: str
    period_from: dt.date = Field(serialization_alias="from")
    period_to: dt.date = Field(serialization_alias="to")
    current: GreenEntryPublic | None  # the newest row: the one in force
    history: list[GreenEntryPublic]  # every row of the period, oldest first
    green: dict[str, Any]  # the report's `green` block (evidence/green.py `green_block`)
    ghg: dict[str, Any]  # its `ghg` block (evidence/ghg.py `ghg_block`)
    generation_meters: list[GenerationMeterPublic]  # the report's meters of role generation
    # the Chinese of a measured row's note where it is its KPI's English note
    # (evidence/green.py `notes_zh`)
    notes_zh: dict[str, str]


def _view(e: Enterprise, date_from: dt.date, date_to: dt.date) -> GreenPublic:
    doc = make_report(e.conn, ReportRequest(e.id, date_from, date_to), key=None)
    trail = green_repo.entry_trail(e.conn, enterprise=e.id, date_from=date_from, date_to=date_to)
    history = [GreenEntryPublic.model_validate(r) for r in trail]
    return GreenPublic(
        enterprise=e.id, period_from=date_from, period_to=date_to,
        current=history[-1] if history else None, history=history,
        green=doc["green"], ghg=doc["ghg"],
        generation_meters=[GenerationMeterPublic.model_validate(m) for m in doc["meters"]
                           if m.get("role") == "generation"],
        notes_zh=green_notes_zh(doc),
    )  # fmt: skip


@router.get(
    "/enterprises/{enterprise}/green", response_model=GreenPublic, response_model_by_alias=True
)
def show(
    e: Reading,
    date_from: Annotated[Day, Query(alias="from")],
    date_to: Annotated[Day, Query(alias="to")],
) -> GreenPublic:
    """The entries in force for exactly [from, to], their trail, and the indicator sheet
    and GHG summary the period's figures give with them."""
    check_period(date_from, date_to)
    return _view(e, date_from, date_to)


def _not_finite(value: Any, where: str = "") -> list[tuple[str, float]]:
    """The fields holding infinity or NaN (JSON's Infinity, YAML's .inf), with the value:
    the models take them, the database's JSON cannot, and no figure of the sheet is one."""
    if isinstance(value, float) and not math.isfinite(value):
        return [(where, value)]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _not_finite(v, f"{where}.{k}".lstrip("."))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _not_finite(v, f"{where}.{i}")]
    return []


# the PUT body in YAML, as stated in the OpenAPI schema (FastAPI states the JSON one)
_GREEN_IN = {"schema": {"$ref": "#/components/schemas/GreenIn"}}
YAML_BODY = {"requestBody": {"content": {"application/yaml": _GREEN_IN, "text/yaml": _GREEN_IN}}}


@router.put(
    "/enterprises/{enterprise}/green",
    response_model=GreenPublic,
    response_model_by_alias=True,
    openapi_extra=YAML_BODY,
)
def enter(e: Entering, body: GreenIn) -> GreenPublic:
    """Enter the period's values (JSON, or YAML as the CLI's file): they are in force for
    reports of exactly that period made from now on; what was in force before stays on
    the trail. The view after."""
    check_period(body.date_from, body.date_to)
    unbounded = _not_finite(body.model_dump(exclude={"date_from", "date_to", "note"}))
    if unbounded:
        raise ApiError(
            422, "invalid_parameter",
            "; ".join(f"{where}: {value} is not a finite number: give the figure"
                      for where, value in unbounded),
            "; ".join(f"{where}: {value} 不是有限的数字: 请填写数值" for where, value in unbounded),
        )  # fmt: skip
    problems = entry_problems(body)
    if problems:
        raise ApiError(
            422, "invalid_parameter",
            "; ".join(f"indicators: {p.en}" for p in problems),
            "; ".join(f"indicators: {p.zh}" for p in problems),
        )  # fmt: skip
    entries = GreenEntries(indicators=body.indicators, pv=body.pv).model_dump(mode="json")
    process = [p.model_dump(mode="json") for p in body.process_emissions]
    green_repo.add_entries(e.conn, green_repo.NewGreenEntries(
        e.id, body.date_from, body.date_to, entries, process, body.note, e.caller.name,
    ))  # fmt: skip
    e.conn.commit()
    return _view(e, body.date_from, body.date_to)
