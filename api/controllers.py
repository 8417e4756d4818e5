"""Thin controllers: read the query string, call `CensusService`, shape the JSON.

The filter parameters are declared once, on the `people_filter` dependency, so
/people, /stats and /dimensions/{name} accept (and document) the same filters.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import anyio
from anyio import to_thread
from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Parameter

from api.formats import FORMAT_DESCRIPTION, ExportOperation, OutputFormat, chosen_format, export_people
from api.schemas import (
    DEFAULT_LIMIT,
    FILTER_PARAMS,
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_PERSON_ID,
    RANGE_BOUNDS,
    Dimension,
    DimensionName,
    Dimensions,
    DimensionValue,
    Education,
    ErrorBody,
    Gender,
    Group,
    GroupBy,
    Health,
    Income,
    MaritalStatus,
    Measure,
    NativeCountry,
    Occupation,
    PeopleField,
    PeoplePage,
    Person,
    Race,
    Relationship,
    SortKey,
    Stats,
    Workclass,
)
from api.services import CensusService
from warehouse.domain import CATEGORIES
from warehouse.query import MEASURES, UNKNOWN, UNKNOWN_PARAM, PeopleFilter

API_PREFIX = "/api/v1"


def _bound(name: str, what: str) -> Any:
    low, high = RANGE_BOUNDS[name]
    end = "lowest" if name.endswith("_min") else "highest"
    return Parameter(ge=low, le=high, description=f"The {end} {what} to include (inclusive).")


def _category(column: str) -> Any:
    return Parameter(
        description=f"Only people whose {column.replace('_', ' ')} is one of these values "
        f"(repeat the parameter for several; `{UNKNOWN_PARAM}` selects missing values).",
    )


def provide_people_filter(
    age_min: Annotated[int | None, _bound("age_min", "age")] = None,
    age_max: Annotated[int | None, _bound("age_max", "age")] = None,
    hours_min: Annotated[int | None, _bound("hours_min", "hours worked per week")] = None,
    hours_max: Annotated[int | None, _bound("hours_max", "hours worked per week")] = None,
    education_num_min: Annotated[int | None, _bound("education_num_min", "years of education")] = None,
    education_num_max: Annotated[int | None, _bound("education_num_max", "years of education")] = None,
    capital_gain_min: Annotated[int | None, _bound("capital_gain_min", "capital gain")] = None,
    capital_gain_max: Annotated[int | None, _bound("capital_gain_max", "capital gain")] = None,
    capital_loss_min: Annotated[int | None, _bound("capital_loss_min", "capital loss")] = None,
    capital_loss_max: Annotated[int | None, _bound("capital_loss_max", "capital loss")] = None,
    fnlwgt_min: Annotated[int | None, _bound("fnlwgt_min", "census weight")] = None,
    fnlwgt_max: Annotated[int | None, _bound("fnlwgt_max", "census weight")] = None,
    gender: Annotated[list[Gender] | None, _category("gender")] = None,  # type: ignore[valid-type]
    race: Annotated[list[Race] | None, _category("race")] = None,  # type: ignore[valid-type]
    marital_status: Annotated[list[MaritalStatus] | None, _category("marital_status")] = None,  # type: ignore[valid-type]
    education: Annotated[list[Education] | None, _category("education")] = None,  # type: ignore[valid-type]
    workclass: Annotated[list[Workclass] | None, _category("workclass")] = None,  # type: ignore[valid-type]
    occupation: Annotated[list[Occupation] | None, _category("occupation")] = None,  # type: ignore[valid-type]
    relationship: Annotated[list[Relationship] | None, _category("relationship")] = None,  # type: ignore[valid-type]
    native_country: Annotated[list[NativeCountry] | None, _category("native_country")] = None,  # type: ignore[valid-type]
    income: Annotated[list[Income] | None, _category("income")] = None,  # type: ignore[valid-type]
) -> PeopleFilter:
    """The query string's filter, validated by the query layer (e.g. min above max is a 400)."""
    bounds = {
        "age": (age_min, age_max),
        "hours_per_week": (hours_min, hours_max),
        "education_num": (education_num_min, education_num_max),
        "capital_gain": (capital_gain_min, capital_gain_max),
        "capital_loss": (capital_loss_min, capital_loss_max),
        "fnlwgt": (fnlwgt_min, fnlwgt_max),
    }
    chosen = {
        "gender": gender,
        "race": race,
        "marital_status": marital_status,
        "education": education,
        "workclass": workclass,
        "occupation": occupation,
        "relationship": relationship,
        "native_country": native_country,
        "income": income,
    }
    ranges = {column: pair for column, pair in bounds.items() if pair != (None, None)}
    categories = {
        column: tuple(dict.fromkeys(UNKNOWN if v.value == UNKNOWN_PARAM else v.value for v in values))
        for column, values in chosen.items()
        if values
    }
    return PeopleFilter(ranges=ranges, categories=categories)


def provide_service(state: State) -> CensusService:
    return state.census  # type: ignore[no-any-return]


def _next_link(request: Request, limit: int, offset: int, total: int) -> str | None:
    if offset + limit >= total:
        return None
    pairs = [(key, value) for key, value in request.query_params.multi_items() if key not in ("offset", "limit")]
    pairs += [("limit", str(limit)), ("offset", str(offset + limit))]
    return f"{request.url.path}?{urlencode(pairs)}"


def _responses(*codes: int) -> dict[int, ResponseSpec]:
    """Every route documents its error statuses (schemathesis checks each one is documented)."""
    texts = {
        400: "A parameter is not valid: the body names the parameter and lists what is allowed.",
        404: "Not found.",
        503: "The database did not answer.",
    }
    return {code: ResponseSpec(data_container=ErrorBody, description=texts[code]) for code in codes}


class PeopleController(Controller):
    path = f"{API_PREFIX}/people"
    tags = ["people"]
    dependencies = {"people_filter": Provide(provide_people_filter, sync_to_thread=False)}

    @get(
        "/",
        summary="People matching a filter, a page at a time (JSON), or all of them (CSV, NDJSON)",
        responses=_responses(400, 503),
        opt={"query": FILTER_PARAMS | {"fields", "sort", "limit", "offset", "format"}},
        operation_class=ExportOperation,
        sync_to_thread=True,
    )
    def list_people(
        self,
        request: Request,
        service: NamedDependency[CensusService],
        people_filter: NamedDependency[PeopleFilter],
        fields: Annotated[
            list[PeopleField] | None,  # type: ignore[valid-type]
            Parameter(description="Columns to return (repeat for several); all when absent."),
        ] = None,
        sort: Annotated[
            SortKey | None,  # type: ignore[valid-type]
            Parameter(description="Column to order by, `-` prefix for descending; ties by id. Default: id."),
        ] = None,
        limit: Annotated[
            int | None,
            Parameter(
                ge=1,
                le=MAX_LIMIT,
                description=f"People per page (default {DEFAULT_LIMIT}). For `csv` and `ndjson`, when absent: "
                "every matching person from `offset` on, streamed.",
            ),
        ] = None,
        offset: Annotated[int, Parameter(ge=0, le=MAX_OFFSET, description="How many matching people to skip.")] = 0,
        format: Annotated[  # noqa: A002 (the query parameter's name)
            OutputFormat | None,
            Parameter(description=FORMAT_DESCRIPTION),
        ] = None,
    ) -> PeoplePage:
        columns = list(dict.fromkeys(f.value for f in fields)) if fields else None
        output = chosen_format(request, format)
        if output is not OutputFormat.json:
            return export_people(service, people_filter, columns, sort.value if sort else None, limit, offset, output)  # type: ignore[return-value]
        limit = limit or DEFAULT_LIMIT
        total, rows = service.people_page(people_filter, columns, sort.value if sort else None, limit, offset)
        return PeoplePage(
            total=total,
            limit=limit,
            offset=offset,
            next=_next_link(request, limit, offset, total),
            items=[Person(**row) for row in rows],
        )

    @get(
        "/{person_id:int}",
        summary="One person by id",
        responses=_responses(400, 404, 503),
        opt={"query": frozenset()},
        sync_to_thread=True,
    )
    def get_person(
        self,
        service: NamedDependency[CensusService],
        person_id: Annotated[int, Parameter(ge=1, le=MAX_PERSON_ID, description="The person's id.")],
    ) -> Person:
        row = service.person(person_id)
        if row is None:
            raise NotFoundException(f"no person with id {person_id}", extra={"parameter": "person_id"})
        return Person(**row)


class StatsController(Controller):
    path = f"{API_PREFIX}/stats"
    tags = ["stats"]
    dependencies = {"people_filter": Provide(provide_people_filter, sync_to_thread=False)}

    @get(
        "/",
        summary="Measures per group of the people matching a filter",
        responses=_responses(400, 503),
        opt={"query": FILTER_PARAMS | {"group_by", "measures"}},
        sync_to_thread=True,
    )
    def stats(
        self,
        service: NamedDependency[CensusService],
        people_filter: NamedDependency[PeopleFilter],
        group_by: Annotated[
            list[GroupBy] | None,  # type: ignore[valid-type]
            Parameter(
                max_items=2,
                description="One or two attributes to group by (repeat the parameter; a repeated value "
                "counts once); one group for everyone when absent.",
            ),
        ] = None,
        measures: Annotated[
            list[Measure] | None,  # type: ignore[valid-type]
            Parameter(description="Measures to compute (repeat for several); all when absent."),
        ] = None,
    ) -> Stats:
        names = list(dict.fromkeys(g.value for g in group_by)) if group_by else []
        wanted = list(dict.fromkeys(m.value for m in measures)) if measures else list(MEASURES)
        rows = service.stats(people_filter, names, wanted)
        groups = [Group(**row) for row in rows]
        return Stats(group_by=names, measures=wanted, filter=people_filter.describe(), groups=groups)


class DimensionsController(Controller):
    path = f"{API_PREFIX}/dimensions"
    tags = ["dimensions"]

    @get(
        "/",
        summary="Every categorical attribute with its allowed values and their counts",
        responses=_responses(400, 503),
        opt={"query": frozenset()},
        sync_to_thread=True,
    )
    def dimensions(self, service: NamedDependency[CensusService]) -> Dimensions:
        return Dimensions(dimensions=[_dimension(d) for d in service.dimensions()])

    @get(
        "/{name:str}",
        summary="One categorical attribute: its allowed values with counts (of the people matching a filter)",
        responses=_responses(400, 404, 503),
        dependencies={"people_filter": Provide(provide_people_filter, sync_to_thread=False)},
        opt={"query": FILTER_PARAMS},
        sync_to_thread=True,
    )
    def dimension(
        self,
        service: NamedDependency[CensusService],
        people_filter: NamedDependency[PeopleFilter],
        name: Annotated[
            str,
            Parameter(
                description="A categorical attribute: " + ", ".join(CATEGORIES),
                examples=[Example(value=d.value) for d in DimensionName],  # type: ignore[attr-defined]
            ),
        ],
    ) -> Dimension:
        if name not in CATEGORIES:
            raise NotFoundException(f"no dimension {name!r}", extra={"parameter": "name", "allowed": list(CATEGORIES)})
        return _dimension(service.dimension(name, people_filter))


def _dimension(data: dict[str, Any]) -> Dimension:
    return Dimension(name=data["name"], title=data["title"], values=[DimensionValue(**v) for v in data["values"]])


@get(
    ["/health", f"{API_PREFIX}/health"],
    summary="Whether the database answers a query",
    tags=["health"],
    responses={503: ResponseSpec(data_container=Health, description="The database did not answer; `reason` says why.")},
    opt={"query": frozenset()},
)
async def health(state: State, service: NamedDependency[CensusService]) -> Response[Health]:
    # Bounded: a locked table or a busy pool must not make the health check hang
    # (the thread is abandoned; the statement timeout ends it later).
    timeout = state.health_timeout_s
    answered = None
    with anyio.move_on_after(timeout):
        answered = await to_thread.run_sync(service.health, abandon_on_cancel=True, limiter=state.health_limiter)
    if answered is None:
        busy = f"no answer within {timeout:g} s: the data is locked or every connection is busy"
        answered = (False, None, None, busy)
    answers, people, in_memory, reason = answered
    body = Health(
        status="ok" if answers else "unavailable",
        database=service.database,
        backend=service.backend,
        commit=state.git_commit,
        people=people,
        in_memory=in_memory,
        reason=reason,
    )
    return Response(body, status_code=200 if answers else 503)
