"""Thin controllers: read the query string, call `CensusService`, shape the JSON.

The filter parameters are declared once, on the `people_filter` dependency, so
/people, /stats and /dimensions/{name} accept (and document) the same filters.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Final
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
from api.intervals import MAX_MIN_N, MEASURES_TEXT, METHOD, SmallGroups
from api.intervals import groups as interval_groups
from api.schemas import (
    CATEGORY_ENUMS,
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
    ErrorBody,
    Group,
    GroupBy,
    Health,
    Measure,
    PeopleField,
    PeoplePage,
    Person,
    SortKey,
    Stats,
)
from api.services import CensusService
from warehouse.contract import ATTRIBUTES, CATEGORY_FILTER_COLUMNS, MEASURES, RANGE_QUERY_PARAMS, UNKNOWN_PARAM
from warehouse.domain import CATEGORIES
from warehouse.estimates import check_parameters
from warehouse.filters import PeopleFilter, parse_whole_number
from warehouse.stats import CONFIDENCE_LEVELS, DEFAULT_CONFIDENCE

API_PREFIX = "/api/v1"
# Parameters that take one whole number: given twice, or as 30.0 / 3e1, they are a 400 naming them.
SCALAR_PARAMS: Final = frozenset({*RANGE_QUERY_PARAMS, "limit", "offset", "min_n"})


def _bound(name: str) -> Any:
    """A range parameter's OpenAPI: bounds, the data dictionary, and the cross-field rule."""
    column, end = RANGE_QUERY_PARAMS[name]
    attribute = ATTRIBUTES[column]
    low, high = RANGE_BOUNDS[name]
    stem = name.removesuffix(f"_{end}")
    other = f"{stem}_max" if end == "min" else f"{stem}_min"
    which = "lowest" if end == "min" else "highest"
    rule = f"With `{other}` on the wrong side of it the range is empty: the request matches nobody (not a 400)."
    return Parameter(
        ge=low,
        le=high,
        # Litestar drops a falsy bound from the schema; state 0 explicitly (capital gain and loss).
        schema_extra={"minimum": low, "maximum": high},
        description=f"The {which} {attribute.title.lower()} to include (inclusive); one whole number, "
        f"written as digits. {rule} {attribute.description}",
    )


def _category(column: str) -> Any:
    attribute = ATTRIBUTES[column]
    return Parameter(
        description=f"Only people whose {attribute.title.lower()} is one of these values "
        f"(repeat the parameter for several; `{UNKNOWN_PARAM}` selects missing values). {attribute.description}",
    )


def _check_scalars(request: Request) -> None:
    """Repeated or float-looking whole numbers are refused here: Litestar would take
    the last of a repeated value, and parse 30.0, 3e1 or 1e1 as integers."""
    for name in SCALAR_PARAMS:
        values = request.query_params.getall(name, [])
        if values:
            parse_whole_number(name, values)


class ApiPeopleFilter(PeopleFilter):
    """The API's filter: a reversed range (`age_min` above `age_max`) is an empty
    interval that matches nobody, where the query layer refuses it.

    OpenAPI cannot state a rule across two parameters, so a request valid by the
    published schema must be answered (schemathesis checks it): the SQL
    `BETWEEN low AND high` with low > high is simply false on every engine.
    (Handlers declare this exact type: Litestar's msgspec check refuses a subclass.)"""

    def __post_init__(self) -> None:
        ordered = {column: bounds for column, bounds in self.ranges.items() if not _reversed(bounds)}
        PeopleFilter(ranges=ordered, categories=self.categories)  # every other rule, as the query layer states it


def _reversed(bounds: tuple[int | None, int | None]) -> bool:
    low, high = bounds
    return low is not None and high is not None and low > high


def _people_filter(request: Request, **values: Any) -> ApiPeopleFilter:
    """The query string's filter, validated by the query layer (a reversed range matches nobody)."""
    _check_scalars(request)
    ranges: dict[str, tuple[int | None, int | None]] = {}
    for name, (column, end) in RANGE_QUERY_PARAMS.items():
        if values.get(name) is not None:
            low, high = ranges.get(column, (None, None))
            ranges[column] = (values[name], high) if end == "min" else (low, values[name])
    categories = {
        column: tuple(dict.fromkeys(None if v.value == UNKNOWN_PARAM else v.value for v in values[column]))
        for column in CATEGORY_FILTER_COLUMNS
        if values.get(column)
    }
    return ApiPeopleFilter(ranges=ranges, categories=categories)


def _provider_signature() -> inspect.Signature:
    """provide_people_filter's parameters, one per filter of the contract (Litestar
    reads them for parsing and for the OpenAPI)."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [inspect.Parameter("request", keyword, annotation=Request)]
    for name in RANGE_QUERY_PARAMS:
        parameters.append(
            inspect.Parameter(name, keyword, default=None, annotation=Annotated[int | None, _bound(name)])
        )
    for column in CATEGORY_FILTER_COLUMNS:
        annotation = Annotated[list[CATEGORY_ENUMS[column]] | None, _category(column)]  # type: ignore[valid-type]
        parameters.append(inspect.Parameter(column, keyword, default=None, annotation=annotation))
    return inspect.Signature(parameters, return_annotation=ApiPeopleFilter)


def provide_people_filter(request: Request, **values: Any) -> ApiPeopleFilter:
    return _people_filter(request, **values)


provide_people_filter.__signature__ = _provider_signature()  # type: ignore[attr-defined]
provide_people_filter.__annotations__ = {
    **{p.name: p.annotation for p in provide_people_filter.__signature__.parameters.values()},  # type: ignore[attr-defined]
    "return": ApiPeopleFilter,
}


def provide_service(state: State) -> CensusService:
    return state.census  # type: ignore[no-any-return]


def _next_link(request: Request, limit: int, offset: int, total: int) -> str | None:
    if offset + limit >= total:
        return None
    pairs = [(key, value) for key, value in request.query_params.multi_items() if key not in ("offset", "limit")]
    pairs += [("limit", str(limit)), ("offset", str(offset + limit))]
    return f"{request.url.path}?{urlencode(pairs)}"


def _responses(*codes: int, not_found: str = "Not found.") -> dict[int, ResponseSpec]:
    """Every route documents its error statuses (schemathesis checks each one is documented)."""
    texts = {
        400: "A parameter is not valid: the body names the parameter and lists what is allowed.",
        404: not_found,
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
        people_filter: NamedDependency[ApiPeopleFilter],
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
        responses=_responses(
            400, 404, 503, not_found="No person has this id (never loaded, or replaced: ids are never reused)."
        ),
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
        summary="Measures per group of the people matching a filter, with their intervals and reliability",
        description=MEASURES_TEXT + "\n\n" + METHOD,
        responses=_responses(400, 503),
        opt={
            "query": FILTER_PARAMS
            | {"group_by", "measures", "intervals", "weighted", "confidence", "min_n", "small_groups"}
        },
        sync_to_thread=True,
    )
    def stats(
        self,
        service: NamedDependency[CensusService],
        people_filter: NamedDependency[ApiPeopleFilter],
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
        intervals: Annotated[
            bool,
            Parameter(
                description="`false`: the measures' values and `n` only, without standard errors, intervals, "
                "census-weighted variants or reliability flags (the query sums fewer statistics)."
            ),
        ] = True,
        weighted: Annotated[
            bool,
            Parameter(
                description="`false`: the sample estimates' intervals only, without the census-weighted "
                "variants (`<measure>_weighted*`, `reliable_weighted`): about half the extra sums."
            ),
        ] = True,
        confidence: Annotated[
            float,
            Parameter(
                description="Confidence level of every interval: "
                + ", ".join(f"{level:.2f}" for level in CONFIDENCE_LEVELS)
                + " (anything else is a 400).",
                schema_extra={"enum": list(CONFIDENCE_LEVELS)},
            ),
        ] = DEFAULT_CONFIDENCE,
        min_n: Annotated[
            int | None,
            Parameter(
                ge=1,
                le=MAX_MIN_N,
                description="Groups of fewer people are unreliable (flagged, or hidden with "
                "`small_groups=hide`). Default: RELIABILITY_MIN_N (30, the NCHS presentation standard).",
            ),
        ] = None,
        small_groups: Annotated[
            SmallGroups,
            Parameter(
                description="`flag` (default): groups of fewer than `min_n` people are returned with "
                "`reliable: false`; `hide`: they are left out (`hidden` counts them)."
            ),
        ] = SmallGroups.flag,
    ) -> Stats:
        names = list(dict.fromkeys(g.value for g in group_by)) if group_by else []
        wanted = list(dict.fromkeys(m.value for m in measures)) if measures else list(MEASURES)
        least, max_rse = check_parameters(confidence, min_n, None)  # a QueryError (400) names a bad one
        if intervals:
            sample, census = service.estimates(
                people_filter, names, wanted, confidence=confidence, min_n=least, max_rse=max_rse, weighted=weighted
            )
            rows = interval_groups(sample, census, names, wanted)
        else:
            rows = [
                {**{k: v for k, v in row.items() if k in names or k in wanted}, "n": row["people"]}
                for row in service.stats(people_filter, names, list(dict.fromkeys([*wanted, "people"])))
            ]
        shown = [row for row in rows if row["n"] >= least] if small_groups is SmallGroups.hide else rows
        return Stats(
            group_by=names,
            measures=wanted,
            filter=people_filter.describe(),
            groups=[Group(**row) for row in shown],
            intervals=intervals,
            weighted=weighted and intervals,
            confidence=confidence,
            min_n=least,
            max_rse=max_rse,
            small_groups=small_groups.value,
            hidden=len(rows) - len(shown),
        )


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
        responses=_responses(400, 404, 503, not_found="No such dimension: the name is not one of the listed ones."),
        dependencies={"people_filter": Provide(provide_people_filter, sync_to_thread=False)},
        opt={"query": FILTER_PARAMS},
        sync_to_thread=True,
    )
    def dimension(
        self,
        service: NamedDependency[CensusService],
        people_filter: NamedDependency[ApiPeopleFilter],
        name: Annotated[
            str,
            Parameter(
                description="A categorical attribute: " + ", ".join(CATEGORIES) + " (anything else is a 404).",
                examples=[Example(value=d.value) for d in DimensionName],  # type: ignore[attr-defined]
                schema_extra={"enum": list(CATEGORIES)},
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
