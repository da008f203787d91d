"""Pooled DIALOG outcome reports at three levels: individual, service (team / organisation) and
population (every partner). The store aggregates (store/outcome_queries.py); this module turns its
sums and counts into named figures, applies disclosure control, and hands one `OutcomeReport` to
the writers (tables, HTML, FHIR MeasureReport).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from fhir_bridge.careplan.codes import MAIN_PLAN, OPEN_STATUSES, PLAN_TYPE_SYSTEM
from fhir_bridge.errors import InputError
from fhir_bridge.measures import DialogDefinition
from fhir_bridge.reports.disclosure import Shown, show
from fhir_bridge.reports.subgroups import AGE_BANDS, DIMENSIONS, ETHNIC_GROUPS, NOT_RECORDED, stratum_label
from fhir_bridge.store.outcome_queries import OutcomeMixin, OutcomeQuery

__all__ = ["LEVELS", "Figure", "OutcomeReport", "ReportRequest", "build_outcome_report", "parse_request"]

Level = Literal["population", "service", "individual"]
LEVELS: tuple[Level, ...] = ("population", "service", "individual")
LONDON = ZoneInfo("Europe/London")  # a period's days are English days, whatever the UTC offset


@dataclass(frozen=True)
class ReportRequest:
    level: Level = "population"
    start: date | None = None          # first day of the period
    end: date | None = None            # last day of the period (inclusive)
    organizations: tuple[str, ...] = ()  # recording organisations: ODS codes or Organization/id
    teams: tuple[str, ...] = ()        # referral performers: CareTeam/id, Organization/id ...
    patient_id: str | None = None
    subgroups: tuple[str, ...] | None = None   # None: every dimension (pooled levels), none (individual)
    disclosure_control: bool = True
    exit_as_entry: bool = True


@dataclass(frozen=True)
class Figure:
    section: str            # activity | outcomes | change | process
    measure: str            # e.g. sqol-mean, item-dissatisfied
    item: str | None        # DIALOG domain code, for per-item figures
    dimension: str          # all | ethnicity | gender | age-band | team | organisation
    stratum: str
    kind: str               # count | mean | change | share
    value: float | int | None
    numerator: int | None
    denominator: int | None
    people: int | None      # how many people the figure rests on
    shown: Shown


@dataclass
class OutcomeReport:
    request: ReportRequest
    as_of: date
    items: list[tuple[str, str, bool]]          # (domain code, display, in change measures), MHSDS order
    figures: list[Figure]
    trend: list[dict]                            # per month: dialogs, people, sqol mean (Shown)
    dialogs: list[dict] = field(default_factory=list)    # individual level: the person's DIALOGs
    episodes: list[dict] = field(default_factory=list)   # individual level: the person's episodes
    _index: dict = field(default_factory=dict, repr=False)

    def figure(self, measure: str, item: str | None = None, dimension: str = "all", stratum: str = "all") -> Figure | None:
        if not self._index:
            self._index.update(((f.measure, f.item, f.dimension, f.stratum), f) for f in self.figures)
        return self._index.get((measure, item, dimension, stratum))

    def strata(self, dimension: str) -> list[str]:
        return list(dict.fromkeys(f.stratum for f in self.figures if f.dimension == dimension))

    @property
    def dimensions(self) -> list[str]:
        return list(dict.fromkeys(f.dimension for f in self.figures))


def build_outcome_report(store: OutcomeMixin, definition: DialogDefinition, request: ReportRequest, *,
                         today: date) -> OutcomeReport:
    request = _checked(request)
    as_of = request.end or today
    items = [(d.code, d.display, d.in_change_measures) for d in definition.domains]
    query = OutcomeQuery(
        items=[_column(code) for code, _, _ in items],
        change_items=[_column(code) for code, _, change in items if change],
        start=_instant(request.start), end=_instant(request.end + timedelta(days=1)) if request.end else None,
        as_of=as_of.year * 10000 + as_of.month * 100 + as_of.day,
        organizations=request.organizations, teams=request.teams, patient_id=request.patient_id,
        dimensions=request.subgroups, exit_as_entry=request.exit_as_entry, age_bands=AGE_BANDS,
        ethnic_groups=ETHNIC_GROUPS, careplan_category=(PLAN_TYPE_SYSTEM, MAIN_PLAN), careplan_statuses=OPEN_STATUSES)
    control = request.disclosure_control and request.level != "individual"
    figures = _Figures(items, control, request.level == "individual")
    activity_rows, episode_rows, trend_rows = store.outcome_figures(query)
    activity = {(r["dimension"], r["stratum"]): r for r in activity_rows}
    episodes = {(r["dimension"], r["stratum"]): r for r in episode_rows}
    # A stratum may have episodes but no DIALOG in the period's activity (its team changed) or the reverse.
    for key in sorted(activity.keys() | episodes.keys(), key=_stratum_order):
        figures.activity(activity.get(key), episodes.get(key))
    trend = [{"month": r["month"], "dialogs": show("count", r["dialogs"], control=control),
              "people": show("count", r["people"], control=control),
              "sqol_mean": show("mean", r["sqol_sum"] / r["sqol_n"] if r["sqol_n"] else None,
                                denominator=r["sqol_n"], people=r["people"], control=control)}
             for r in trend_rows]
    report = OutcomeReport(request, as_of, items, figures.figures, trend)
    if request.level == "individual":
        report.dialogs = store.person_dialogs(query)
        report.episodes = store.outcome_pairs(query)
    return report


def parse_request(*, level: str | None = None, start: str | None = None, end: str | None = None,
                  organizations: Sequence[str] = (), teams: Sequence[str] = (), subject: str | None = None,
                  subgroups: Sequence[str] | None = None, exit_as_entry: bool = True,
                  disclosure_control: bool = True) -> ReportRequest:
    """A ReportRequest from text (command-line options, operation parameters); InputError naming
    the parameter when one cannot be read. Subgroups may repeat or be comma-separated."""
    chosen = level or ("individual" if subject else "service" if organizations or teams else "population")
    groups = None if subgroups is None else tuple(g.strip() for s in subgroups for g in s.split(",") if g.strip())
    patient = subject.removeprefix("Patient/") if subject else None
    request = ReportRequest(chosen, _date("start", start), _date("end", end), tuple(organizations), tuple(teams),
                            patient, groups, disclosure_control, exit_as_entry)
    return _checked(request)


def _date(name: str, value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InputError(f"the period {name} must be a date such as 2025-03-31, not {value!r}") from None


def _checked(request: ReportRequest) -> ReportRequest:
    if request.level not in LEVELS:
        raise InputError(f"level must be one of {', '.join(LEVELS)}, not {request.level!r}")
    if request.start and request.end and request.start > request.end:
        raise InputError(f"the period starts ({request.start}) after it ends ({request.end})")
    if request.level == "individual" and not request.patient_id:
        raise InputError("an individual report needs the person: a Patient id")
    if request.level != "individual" and request.patient_id:
        raise InputError(f"a {request.level} report pools people: a Patient belongs to the individual level")
    if request.level == "service" and not (request.organizations or request.teams):
        raise InputError("a service report needs an organisation or a team to report on")
    subgroups = request.subgroups
    if subgroups is None:
        subgroups = () if request.level == "individual" else DIMENSIONS
    unknown = [s for s in subgroups if s not in DIMENSIONS]
    if unknown:
        raise InputError(f"unknown subgroup {', '.join(map(repr, unknown))}: choose from {', '.join(DIMENSIONS)}")
    organizations = tuple(_organization(o) for o in request.organizations)
    return ReportRequest(request.level, request.start, request.end, organizations, request.teams,
                         request.patient_id, tuple(dict.fromkeys(subgroups)), request.disclosure_control,
                         request.exit_as_entry)


def _organization(value: str) -> str:
    """An ODS code as the score table holds it (system|code); an Organization/id reference as is."""
    return value if "/" in value or "|" in value else f"https://fhir.nhs.uk/Id/ods-organization-code|{value}"


def _instant(day: date | None) -> int | None:
    if day is None:
        return None
    return int(datetime.combine(day, time(), tzinfo=LONDON).timestamp()) * 1_000_000


_BAND_ORDER = {label: index for index, (_, label) in enumerate(AGE_BANDS)}


def _stratum_order(key: tuple[str, str]) -> tuple:
    """The whole first, then dimensions as listed; strata alphabetically (age bands by age), not recorded last."""
    dimension, stratum = key
    rank = -1 if dimension == "all" else DIMENSIONS.index(dimension)
    return rank, stratum == NOT_RECORDED, _BAND_ORDER.get(stratum, 0) if dimension == "age-band" else 0, stratum


def _column(code: str) -> str:
    return code.replace("-", "_")


class _Figures:
    """Named figures from the store's sums and counts, one stratum at a time."""

    def __init__(self, items: Sequence[tuple[str, str, bool]], control: bool, individual: bool):
        self.items, self.control, self.figures = items, control, []
        self.individual = individual   # one person's own figures: "few people" says nothing there

    def add(self, section: str, measure: str, kind: str, value, *, item: str | None = None, numerator=None,
            denominator=None, people=None) -> None:
        self.figures.append(Figure(section, measure, item, self.dimension, self.stratum, kind, value, numerator,
                                   denominator, people, show(kind, value, numerator=numerator, denominator=denominator,
                                                             people=None if self.individual else people,
                                                             control=self.control)))

    def count(self, section: str, measure: str, value) -> None:
        self.add(section, measure, "count", int(value or 0), people=None)

    def ratio(self, section: str, measure: str, kind: str, numerator, denominator, people, item=None) -> None:
        numerator, denominator = numerator or 0, int(denominator or 0)
        value = numerator / denominator if denominator else None
        self.add(section, measure, kind, value, item=item, numerator=numerator if kind == "share" else None,
                 denominator=denominator, people=people)

    def activity(self, row: dict | None, episodes: dict | None) -> None:
        first = row or episodes
        self.dimension, self.stratum = first["dimension"], stratum_label(first["dimension"], first["stratum"])
        row = row or {}
        get = lambda key: row.get(key) or 0  # noqa: E731 - SUM over no rows is NULL
        for measure, key in (("dialogs", "dialogs"), ("prom-dialogs", "prom"), ("care-planning-dialogs", "care_planning"),
                             ("possible-duplicate-dialogs", "duplicates"), ("people", "people"),
                             ("people-prom", "people_prom")):
            self.count("activity", measure, get(key))
        self.ratio("outcomes", "sqol-mean", "mean", get("sqol_sum"), get("sqol_n"), get("sqol_people"))
        self.ratio("outcomes", "treatment-satisfaction-mean", "mean", get("ts_sum"), get("ts_n"), get("ts_people"))
        for code, _, _ in self.items:
            c = _column(code)
            self.ratio("outcomes", "item-mean", "mean", get(f"sum_{c}"), get(f"n_{c}"), get(f"people_{c}"), code)
            self.ratio("outcomes", "item-dissatisfied", "share", get(f"low_{c}"), get(f"n_{c}"), get(f"people_{c}"), code)
        self.ratio("process", "coproduced-care-plan", "share", get("people_with_plan"), get("people"), get("people"))
        self.episodes(episodes or {})

    def episodes(self, row: dict) -> None:
        get = lambda key: row.get(key) or 0  # noqa: E731
        people, paired = get("people"), get("people_paired")
        self.ratio("process", "t1-completion", "share", get("people_t1"), people, people)
        self.ratio("process", "t2-completion", "share", get("people_t2"), get("people_t1"), get("people_t1"))
        self.count("change", "episodes-paired", get("paired"))
        self.count("change", "people-paired", paired)
        self.ratio("change", "sqol-change-mean", "change", get("sqol_change_sum"), get("sqol_change_n"), paired)
        self.ratio("change", "sqol-meaningful-improvement", "share", get("sqol_meaningful"), get("sqol_change_n"), paired)
        pooled = dict.fromkeys(("low_n", "low_change_sum", "low_improved", "high_n", "high_change_sum",
                                "high_deteriorated"), 0)
        for code, _, in_change in self.items:
            if not in_change:
                continue
            c, n = _column(code), get(f"n_{_column(code)}")
            self.ratio("change", "item-entry-mean", "mean", get(f"entry_sum_{c}"), n, paired, code)
            self.ratio("change", "item-latest-mean", "mean", get(f"latest_sum_{c}"), n, paired, code)
            self.ratio("change", "item-change-mean", "change", get(f"change_sum_{c}"), n, paired, code)
            self.ratio("change", "item-reliable-improvement", "share", get(f"improved_{c}"), n, paired, code)
            self.ratio("change", "item-reliable-deterioration", "share", get(f"deteriorated_{c}"), n, paired, code)
            self.ratio("change", "item-change-from-dissatisfied", "change", get(f"low_change_sum_{c}"),
                       get(f"low_n_{c}"), paired, code)
            self.ratio("change", "item-improved-from-dissatisfied", "share", get(f"low_improved_{c}"),
                       get(f"low_n_{c}"), paired, code)
            self.ratio("change", "item-change-from-satisfied", "change", get(f"high_change_sum_{c}"),
                       get(f"high_n_{c}"), paired, code)
            self.ratio("change", "item-deteriorated-from-satisfied", "share", get(f"high_deteriorated_{c}"),
                       get(f"high_n_{c}"), paired, code)
            for key in pooled:
                pooled[key] += get(f"{key}_{c}")
        # Starting need pooled over the life domains: one (episode, item) pair counts once.
        self.ratio("change", "change-from-dissatisfied", "change", pooled["low_change_sum"], pooled["low_n"], paired)
        self.ratio("change", "improved-from-dissatisfied", "share", pooled["low_improved"], pooled["low_n"], paired)
        self.ratio("change", "change-from-satisfied", "change", pooled["high_change_sum"], pooled["high_n"], paired)
        self.ratio("change", "deteriorated-from-satisfied", "share", pooled["high_deteriorated"], pooled["high_n"],
                   paired)
