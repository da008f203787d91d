"""Pooled DIALOG outcome figures, aggregated in SQL on `dialog_scores` (SQLite and PostgreSQL alike).
A mixin of `Repository`, which stays the only code that touches a database connection.

The database does the counting; it returns sums and counts per subgroup, never rows per DIALOG, so
a population report costs a few scans however many DIALOGs there are (how the work is shaped to
stay within seconds at 1,000,000 DIALOGs: "Shape of the work" below). Rules come from
fhir_bridge.measures (what counts as dissatisfied, a reliable or meaningful change); subgroup
definitions (age bands, ethnic groups) come from the caller.

- Activity: DIALOGs in the period, split by purpose; outcome figures (means, share rating 1-3) use
  PROM-purpose DIALOGs not tagged as possible duplicates only.
- Episodes: PROM DIALOGs (not duplicates) up to the period's end, per person and recording
  organisation (the provider). A DIALOG basedOn a referral belongs to that referral's episode;
  without one, an `assessment` DIALOG, or any DIALOG after a `discharge`, starts a new episode.
  Change is latest minus entry, for episodes whose latest DIALOG falls in the period. With
  `exit_as_entry`, an episode that does not begin with an assessment takes the provider's previous
  DIALOG as its entry when that was a discharge (the exit DIALOG of one service serves as the entry
  DIALOG of the next).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from decimal import Decimal
from math import lcm
from typing import TYPE_CHECKING, Any

from sqlalchemy import (BigInteger, Column, Connection, Integer, MetaData, String, Table, and_, case, cast, false,
                        func, insert, literal, literal_column, or_, select, text, true, union_all)
from sqlalchemy.pool import SingletonThreadPool, StaticPool

from fhir_bridge.measures.change import MEANINGFUL_SQOL_CHANGE, RELIABLE_ITEM_CHANGE
from fhir_bridge.measures.dialog import DISSATISFIED, SATISFIED
from fhir_bridge.store import schema

__all__ = ["OutcomeQuery", "OutcomeMixin", "DIMENSIONS", "NOT_RECORDED"]

DIMENSIONS = ("ethnicity", "gender", "age-band", "team", "organisation")
NOT_RECORDED = "not recorded"
COUNTED_STATUSES = ("completed", "amended")  # in-progress and entered-in-error responses are no DIALOG
_s, _p, _ref, _tok = schema.dialog_scores, schema.person_attributes, schema.reference_index, schema.token_index


@dataclass(frozen=True)
class OutcomeQuery:
    """What to aggregate. Times are microseconds UTC, `end` exclusive; `as_of` (YYYYMMDD) is the
    date ages are taken at. Empty filters mean everyone."""

    items: Sequence[str]                    # dialog_scores rating columns (domain codes with '_'), MHSDS order
    change_items: Sequence[str]             # those in change measures (items 1-8)
    sqol_items: Sequence[str] = ()          # unused by SQL; kept with the query for callers' tables
    start: int | None = None
    end: int | None = None
    as_of: int = 0
    organizations: Sequence[str] = ()       # recording_organization values
    teams: Sequence[str] = ()               # referral performer references (CareTeam/x, Organization/y)
    patient_id: str | None = None
    dimensions: Sequence[str] = ()          # subgroups besides the whole ("all")
    exit_as_entry: bool = True
    age_bands: Sequence[tuple[int, str]] = ()      # (lowest age, label), ascending; below the first: first label
    ethnic_groups: Mapping[str, str] = field(default_factory=dict)   # ethnic category code -> group label
    careplan_category: tuple[str, str] = ("", "")  # (system, code) of a DIALOG+ main plan
    careplan_statuses: Sequence[str] = ()


class OutcomeMixin:
    if TYPE_CHECKING:
        def _reading(self) -> AbstractContextManager[Connection]: ...

    def outcome_activity(self, query: OutcomeQuery) -> list[dict]:
        """Per (dimension, stratum): DIALOG and people counts by purpose, outcome sums and counts
        (SQOL, treatment satisfaction, per item: sum, rated, rated 1-3, people), people with a plan."""
        with self._reading() as connection:
            return _activity(connection, query)

    def outcome_episodes(self, query: OutcomeQuery) -> list[dict]:
        """Per (dimension, stratum): episodes and people active in the period, T1/T2 completion and
        change sums and counts (SQOL, per change item: improved, deteriorated, by starting need)."""
        with self._reading() as connection:
            return _episodes(connection, query)

    def outcome_pairs(self, query: OutcomeQuery) -> list[dict]:
        """One row per episode active in the period: its entry and latest response ids and
        timepoints, SQOL change and per-item ratings (for an individual's report, and tests)."""
        with self._reading() as connection:
            return _pairs(connection, query)

    def outcome_trend(self, query: OutcomeQuery) -> list[dict]:
        """Per calendar month (as recorded) of the period: outcome DIALOGs, people, SQOL sum and count."""
        with self._reading() as connection:
            return _trend(connection, query)

    def outcome_figures(self, query: OutcomeQuery) -> tuple[list[dict], list[dict], list[dict]]:
        """outcome_activity, outcome_episodes and outcome_trend together. Each family is a CPU-bound
        pass of its own (a few seconds at 1,000,000 DIALOGs), so the episodes are read on a second
        connection while this one reads the activity and the trend (one read transaction), when
        the store allows a second connection onto the same data (a file or a server, not an
        in-memory SQLite database). The two transactions begin together; like the three separate
        reads this replaces, they are not one snapshot: a DIALOG committed in that instant may
        count in one family and not the other."""
        with self._reading() as connection:
            concurrent = not isinstance(connection.engine.pool, (SingletonThreadPool, StaticPool))
            if not concurrent:
                return _activity(connection, query), _episodes(connection, query), _trend(connection, query)
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="outcome-episodes") as helper:
                episodes = helper.submit(self.outcome_episodes, query)
                activity, trend = _activity(connection, query), _trend(connection, query)
                return activity, episodes.result(), trend

    def person_dialogs(self, query: OutcomeQuery) -> list[dict]:
        """Every counted DIALOG of query.patient_id in the period, oldest first (individual level)."""
        columns = [_s.c.response_id, _s.c.subject_id, _s.c.authored, _s.c.authored_text, _s.c.purpose, _s.c.timepoint,
                   _s.c.recording_organization, _s.c.referral_id, _s.c.possible_duplicate, _s.c.sqol_mean,
                   _s.c.sqol_answered, _s.c.treatment_satisfaction_mean, _s.c.treatment_satisfaction_answered,
                   case((_outcome(), 1), else_=0).label("outcome"), _team_of(_s.c.referral_id).label("team"),
                   _p.c.gender, _p.c.ethnic_category, _p.c.birth_date,
                   *[_s.c[f"rating_{item}"] for item in query.items]]
        statement = (select(*columns).select_from(_s.outerjoin(_p, _p.c.patient_id == _s.c.subject_id))
                     .order_by(_s.c.authored, _s.c.response_id))
        with self._reading() as connection:
            statement = statement.where(*_counted(query, connection.dialect.name, windowed=True))
            return [_plain(row) for row in connection.execute(statement)]


def _plain(row) -> dict:
    """Plain str keys, Python ints and floats whatever the database (PostgreSQL's SUM of bigint is a Decimal)."""
    mapping = row if isinstance(row, dict) else row._mapping
    return {str(key): (int(value) if value == value.to_integral_value() else float(value))
            if isinstance(value, Decimal) else value for key, value in mapping.items()}


def _in_order(rows, keys: Sequence[str], scaled: Sequence[str] = (), scale: int = 1) -> list[dict]:
    """Rows as plain dicts, columns in `keys` order; `scaled` columns (sums of means in units of
    1/scale, see _units) turned back into sums of means."""
    out = []
    for plain in map(_plain, rows):
        for key in scaled:
            if plain[key] is not None:
                plain[key] = plain[key] / scale
        out.append({key: plain[key] for key in keys})
    return out


def _scale(query: OutcomeQuery) -> int:
    """A multiple of every possible count of rated items (1 to all of them): 27720 for DIALOG's 11."""
    return lcm(*range(1, len(query.items) + 1))


def _units(mean, scale: int):
    """A mean of k/n (n rated items) as an exact whole number of 1/scale units. Sums of means are
    summed in these units: exact, and so the same in any order and on any database. Summed as
    doubles, the order of the rows decided the last bit, and a mean of exactly 4.875 came out as
    4.874999999999999 (shown 4.87) or 4.875 (shown 4.88) depending on the plan."""
    return cast(func.round(mean * scale), BigInteger)


# -- Shape of the work -----------------------------------------------------------------------------------
# Measured on SQLite with 100,000 people and 1,000,000 DIALOGs (bench/outputs.py), where the first
# version of these queries took 473 s for a population report:
# - Care plans: joined row by row, SQLite looked up each plan's category through the
#   (resource_type, param, code, system) index, i.e. read every plan's category token for every
#   plan: quadratic, minutes at 33,000 plans. They are sets now (IN), built once.
# - Rows are read in table order. Only an individual's report goes through an index
#   (ix_scores_subject); every other report reads much of the table, and SQLite, having no
#   statistics, would walk ix_scores_authored or ix_scores_subject and fetch each row at random:
#   2024's 559,004 DIALOGs took 4.3 s that way against 0.5 s in table order. `+ 0` and coalesce()
#   keep its planner off those indexes without changing what the terms select.
# - Each figure family reads dialog_scores once, in one GROUP BY, summing per (provider, referral,
#   person) before anything joins: team, person attributes and care plan are looked up once per
#   such slice, and the team by the referral's id, never by joining every referral.
# - Subgroups roll up from one "cube" (sums per combination of strata); people are counted once
#   per person (per person and organisation, per person and team) with 0/1 flags, never with
#   COUNT(DISTINCT ...) per figure and stratum (15 per dimension) or a two-level grouping per
#   dimension (3.5 s for the activity's six). SQLite's aggregate steps (~50 ns each), not its
#   reads, are what costs: the cube and the flags take about 1 s per family.
# - Episodes: nested window functions sort every PROM again at each level (three levels: 5.1 s
#   for 609,041 PROMs). Instead the PROMs are written once, sorted per provider, into a temporary
#   table keyed by their position (outcome_proms.seq): the previous and next DIALOG are the rows
#   at seq - 1 and seq + 1, the running count of episode starts is a window over seq (read in key
#   order, no sort), only the first and last PROM of each run of an episode are grouped, and an
#   episode's entry and latest DIALOG are read back by seq.
# - What remains for a population report: 3.6 s of CPU for the activity, 0.7 s for the trend and
#   3.3 s for the episodes; outcome_figures reads the episodes on a second connection meanwhile
#   (two cores): 5.4 s instead of 7.6 s.

_counting = MetaData()
# The PROMs of an episode query in provider order (person, organisation, authored, id): seq is the
# position, and on SQLite the rowid, so that rows read back by seq cost a key lookup each.
_proms = Table(
    "outcome_proms", _counting,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("subject_id", String(64)), Column("recording_organization", String(255)),
    Column("response_id", String(64)), Column("authored", BigInteger), Column("timepoint", String(32)),
    Column("referral_id", String(64)),
    prefixes=["TEMPORARY"])


# -- the rows aggregated ---------------------------------------------------------------------------------
def _outcome():
    return and_(_s.c.purpose == "prom", _s.c.possible_duplicate == false())


def _counted(query: OutcomeQuery, dialect: str, *, windowed: bool, prom_only: bool = False) -> list:
    """Conditions on dialog_scores for counted DIALOGs; windowed: in [start, end); else everything
    before end (episodes need their past). prom_only: PROMs that are not possible duplicates."""
    subject_type, authored = _s.c.subject_type, _s.c.authored
    if query.patient_id:      # one person: ix_scores_subject finds their rows
        conditions = [subject_type == "Patient", _s.c.subject_id == query.patient_id]
    else:
        if dialect == "sqlite":   # most of the table: read it in table order (see "Shape of the work")
            subject_type, authored = func.coalesce(subject_type, ""), authored + 0
        conditions = [subject_type == "Patient", _s.c.subject_id.is_not(None)]
    conditions += [authored.is_not(None), _s.c.status.in_(COUNTED_STATUSES)]
    if query.end is not None:
        conditions.append(authored < query.end)
    if windowed and query.start is not None:
        conditions.append(authored >= query.start)
    if query.organizations:
        conditions.append(_s.c.recording_organization.in_(list(query.organizations)))
    if prom_only:
        conditions.append(_outcome())
    elif query.teams:
        conditions.append(_s.c.referral_id.in_(_team_referrals(query)))
    return conditions


def _performer():
    return _ref.c.target_type.concat("/").concat(_ref.c.target_id)


def _team_of(referral_id):
    """The referral's team: its performer (the least, when a referral names several). A lookup by
    the referral's id on ix_reference_owner; `param` sits inside the aggregate rather than in the
    WHERE clause, so that no planner prefers (resource_type, param, ...) and reads every performer."""
    team = func.min(case((and_(_ref.c.param == "performer", _ref.c.target_id.is_not(None)), _performer())))
    return (select(team).where(_ref.c.resource_type == "ServiceRequest", _ref.c.resource_id == referral_id)
            .scalar_subquery())


def _team_referrals(query: OutcomeQuery):
    """The referrals whose team (as _team_of names it) is one of query.teams: a set built once."""
    return (select(_ref.c.resource_id)
            .where(_ref.c.resource_type == "ServiceRequest", _ref.c.param == "performer", _ref.c.target_id.is_not(None))
            .group_by(_ref.c.resource_id).having(func.min(_performer()).in_(list(query.teams))))


def _plan_holders(query: OutcomeQuery):
    """People with a DIALOG+ main care plan in one of the open statuses (from the search index): a
    set built once. The plans' category and status are sets too: joined row by row, SQLite took the
    (resource_type, param, code, system) index for every plan and read every plan's category token
    each time (quadratic: minutes at 33,000 plans)."""
    system, code = query.careplan_category
    category = select(_tok.c.resource_id).where(_tok.c.resource_type == "CarePlan", _tok.c.param == "category",
                                                _tok.c.system == system, _tok.c.code == code)
    status = select(_tok.c.resource_id).where(_tok.c.resource_type == "CarePlan", _tok.c.param == "status",
                                              _tok.c.code.in_(list(query.careplan_statuses) or [""]))
    return select(_ref.c.target_id).where(_ref.c.resource_type == "CarePlan", _ref.c.param == "subject",
                                          _ref.c.target_type == "Patient", _ref.c.resource_id.in_(category),
                                          _ref.c.resource_id.in_(status))


# -- subgroups -------------------------------------------------------------------------------------------
_PERSON_DIMENSIONS = ("ethnicity", "gender", "age-band")   # a person is in one stratum of each


def _by_stratum(rows, query: OutcomeQuery, sums: Callable[[Any], list[tuple[str, Any]]],
                flags: Callable[[Any], list[tuple[str, Any]]]):
    """Per (dimension, stratum) over `rows` (a select of rows with subject_id,
    recording_organization, team, gender, ethnic_category, birth_date): each of sums(columns)
    (name, an additive aggregate over the rows), `people` (distinct subject_id), and for each of
    flags(columns) (name, an aggregate) the people whose own value of it is above 0.

    The rows are stored once with their strata. Sums: one GROUP BY per combination of strata (the
    cube), summed per dimension from it (the person-level dimensions from its roll-up over their
    strata). People: one row per person (per person and organisation, per person and team) with
    0/1 flags, counted per stratum."""
    dimensions = ("all", *query.dimensions)
    inner = rows.subquery("rows")
    strata = [_stratum(inner.c, query, d).label(_stratum_column(d)) for d in dimensions if d != "all"]
    source = select(inner, *strata).cte("source").prefix_with("MATERIALIZED")
    c = source.c
    sums, flags = sums(c), flags(c)
    sum_names, people_names = [name for name, _ in sums], ["people", *[name for name, _ in flags]]
    keys = [c[s.name] for s in strata]
    personal = [c[_stratum_column(d)] for d in _PERSON_DIMENSIONS if d in dimensions]
    cube = (select(*keys, *[aggregate.label(name) for name, aggregate in sums])
            .group_by(*keys).cte("cube").prefix_with("MATERIALIZED"))
    personal_sums = (select(*[cube.c[k.name] for k in personal], *[func.sum(cube.c[n]).label(n) for n in sum_names])
                     .group_by(*[cube.c[k.name] for k in personal]).cte("personal_sums").prefix_with("MATERIALIZED"))
    flagged = [case((aggregate > 0, 1), else_=0).label(name) for name, aggregate in flags]
    person = (select(c.subject_id, *personal, *flagged).group_by(c.subject_id, *personal)
              .cte("person").prefix_with("MATERIALIZED"))
    person_cube = (select(*[person.c[k.name] for k in personal], func.count().label("people"),
                          *[func.sum(person.c[name]).label(name) for name, _ in flags])
                   .group_by(*[person.c[k.name] for k in personal]).cte("person_cube").prefix_with("MATERIALIZED"))
    branches = []
    for dimension in dimensions:
        if dimension in ("all", *_PERSON_DIMENSIONS):
            people = _rolled_up(person_cube, dimension, people_names)
            totals = _rolled_up(personal_sums, dimension, sum_names)
        else:   # organisation, team: a person may be in several strata
            stratum = c[_stratum_column(dimension)]
            per = select(stratum, c.subject_id, *flagged).group_by(stratum, c.subject_id).subquery()
            people = (select(per.c[stratum.name].label("stratum"), func.count().label("people"),
                             *[func.sum(per.c[name]).label(name) for name, _ in flags])
                      .group_by(per.c[stratum.name]).subquery())
            totals = _rolled_up(cube, dimension, sum_names)
        if dimension == "all":
            joined, stratum_value = totals.join(people, true()), literal_column("'all'", String)
        else:
            joined, stratum_value = totals.join(people, people.c.stratum == totals.c.stratum), totals.c.stratum
        branches.append(select(_dimension_label(dimension), stratum_value.label("stratum"),
                               *[totals.c[name] for name in sum_names],
                               *[func.coalesce(people.c[name], 0).label(name) for name in people_names])
                        .select_from(joined))
    return union_all(*branches)


def _rolled_up(table, dimension: str, names: Sequence[str]):
    """Sums of `names` over `table`, per stratum of `dimension` (one row for "all")."""
    columns = [func.sum(table.c[name]).label(name) for name in names]
    if dimension == "all":
        return select(*columns).subquery()
    column = table.c[_stratum_column(dimension)]
    return select(column.label("stratum"), *columns).group_by(column).subquery()


def _stratum_column(dimension: str) -> str:
    return "stratum_" + dimension.replace("-", "_")


# -- activity --------------------------------------------------------------------------------------------
def _activity(connection: Connection, query: OutcomeQuery) -> list[dict]:
    outcome = _outcome()
    duplicate = _s.c.possible_duplicate != false()
    scale = _scale(query)
    sums = [("dialogs", func.count()),
            ("prom", func.sum(case((outcome, 1), else_=0))),
            ("care_planning", func.sum(case((and_(_s.c.purpose == "care-planning", ~duplicate), 1), else_=0))),
            ("duplicates", func.sum(case((duplicate, 1), else_=0))),
            ("sqol_sum", func.sum(case((outcome, _units(_s.c.sqol_mean, scale))))),
            ("sqol_n", func.count(case((outcome, _s.c.sqol_mean)))),
            ("ts_sum", func.sum(case((outcome, _units(_s.c.treatment_satisfaction_mean, scale))))),
            ("ts_n", func.count(case((outcome, _s.c.treatment_satisfaction_mean))))]
    for item in query.items:
        rating = _s.c[f"rating_{item}"]
        sums += [(f"sum_{item}", func.sum(case((outcome, rating)))),
                 (f"n_{item}", func.count(case((outcome, rating)))),
                 (f"low_{item}", func.sum(case((and_(outcome, rating.between(DISSATISFIED[0], DISSATISFIED[-1])), 1),
                                               else_=0)))]
    keys = (_s.c.recording_organization, _s.c.referral_id, _s.c.subject_id)
    # The team and the care plan are looked up here, once per group; a plain select over this one
    # would be flattened into the next by SQLite, which then repeats the lookup for every use.
    base = (select(*keys, _team_of(_s.c.referral_id).label("team"),
                   case((_s.c.subject_id.in_(_plan_holders(query)), 1), else_=0).label("has_plan"),
                   *[aggregate.label(name) for name, aggregate in sums])
            .where(*_counted(query, connection.dialect.name, windowed=True)).group_by(*keys).subquery("base"))
    b = base.c
    slices = (select(b.subject_id, b.recording_organization, b.team, _p.c.gender, _p.c.ethnic_category,
                     _p.c.birth_date, b.has_plan, *[b[name] for name, _ in sums])
              .select_from(base.outerjoin(_p, _p.c.patient_id == b.subject_id)))
    pooled = lambda c: [(name, func.sum(c[name])) for name, _ in sums]  # noqa: E731
    flags = lambda c: [  # noqa: E731
        ("people_prom", func.sum(c.prom)), ("people_care_planning", func.sum(c.care_planning)),
        ("people_with_plan", func.sum(c.has_plan)), ("sqol_people", func.sum(c.sqol_n)),
        ("ts_people", func.sum(c.ts_n)),
        *[(f"people_{item}", func.sum(c[f"n_{item}"])) for item in query.items]]
    columns = ["dimension", "stratum", "dialogs", "prom", "care_planning", "duplicates", "people", "people_prom",
               "people_care_planning", "people_with_plan", "sqol_sum", "sqol_n", "sqol_people", "ts_sum", "ts_n",
               "ts_people"]
    for item in query.items:
        columns += [f"sum_{item}", f"n_{item}", f"low_{item}", f"people_{item}"]
    result = connection.execute(_by_stratum(slices, query, pooled, flags))
    return _in_order(result, columns, ("sqol_sum", "ts_sum"), scale)


# -- episodes --------------------------------------------------------------------------------------------
def _fill_proms(connection: Connection, query: OutcomeQuery) -> None:
    """outcome_proms: the PROMs (not duplicates) up to the period's end, numbered in provider order."""
    _drop_proms(connection, if_exists=True)   # left by a report that failed on this connection
    _proms.create(connection)
    order = (_s.c.subject_id, _s.c.recording_organization, _s.c.authored, _s.c.response_id)
    columns = [_s.c.subject_id, _s.c.recording_organization, _s.c.response_id, _s.c.authored, _s.c.timepoint,
               _s.c.referral_id]
    names = [column.name for column in columns]
    rows = select(*columns).where(*_counted(query, connection.dialect.name, windowed=False, prom_only=True))
    if connection.dialect.name == "sqlite":
        # rowids are given in insertion order: INSERT ... SELECT ... ORDER BY numbers the rows
        # with one sort (row_number() would add SQLite's window machinery to it)
        statement = insert(_proms).from_select(names, rows.order_by(*order))
    else:
        statement = insert(_proms).from_select(["seq", *names], select(func.row_number().over(order_by=order),
                                                                       *columns).where(rows.whereclause))
    connection.execute(statement)
    if connection.dialect.name == "postgresql":
        # a temporary table has no statistics until analysed: without them the planner guessed
        # 6,566 PROMs for 60,976 (sampling is cheap, and autovacuum never sees temporary tables)
        connection.execute(text(f"ANALYZE {_proms.name}"))


def _drop_proms(connection: Connection, *, if_exists: bool = False) -> None:
    """Called when the figures are read; after an error the transaction rolls back, and takes the
    table with it. Named with its schema, so that a permanent table of that name is never touched."""
    schema_name = "temp" if connection.dialect.name == "sqlite" else "pg_temp"
    connection.execute(text(f"DROP TABLE {'IF EXISTS ' if if_exists else ''}{schema_name}.{_proms.name}"))


def _episode_rows(query: OutcomeQuery):
    """One row per episode with a PROM DIALOG in the period: entry and latest DIALOG, change.
    Reads outcome_proms (_fill_proms)."""
    row, before, after = _proms.alias("row"), _proms.alias("before"), _proms.alias("after")
    provider = lambda a, b: and_(a.c.subject_id == b.c.subject_id,  # noqa: E731
                                 a.c.recording_organization.is_not_distinct_from(b.c.recording_organization))
    # the provider's previous and next PROM: the rows just before and after, when they are the same
    # person and organisation (key lookups)
    neighbours = (row.outerjoin(before, and_(before.c.seq == row.c.seq - 1, provider(before, row)))
                  .outerjoin(after, and_(after.c.seq == row.c.seq + 1, provider(after, row))))
    starts = case((or_(before.c.seq.is_(None), row.c.timepoint == "assessment", before.c.timepoint == "discharge"), 1),
                  else_=0)
    next_starts = case((or_(after.c.timepoint == "assessment", row.c.timepoint == "discharge"), 1), else_=0)
    # Running counts over all PROMs in seq order (a window SQLite computes in key order, unsorted):
    # episode starts, where within a provider the same count is the same inferred episode (the
    # provider's own numbering is this count less its first row's, + 1); and providers, a whole
    # number standing for (person, organisation) in what follows.
    in_order = {"order_by": row.c.seq}   # seq is unique: the default frame is every row up to this one
    count = func.sum(starts).over(**in_order)
    providers = func.sum(case((before.c.seq.is_(None), 1), else_=0)).over(**in_order)
    # A run: consecutive PROMs of one episode. Only a run's first and last PROM go on to the
    # grouping (most episodes are one run: two rows of the provider's seven or so).
    same_as_before = and_(before.c.seq.is_not(None), or_(before.c.referral_id == row.c.referral_id, and_(
        row.c.referral_id.is_(None), before.c.referral_id.is_(None), starts == 0)))
    same_as_after = and_(after.c.seq.is_not(None), or_(after.c.referral_id == row.c.referral_id, and_(
        row.c.referral_id.is_(None), after.c.referral_id.is_(None), next_starts == 0)))
    numbered = (select(row.c.seq, row.c.referral_id, providers.label("provider"), count.label("starts"),
                       case((row.c.referral_id.is_(None), count)).label("inferred"),
                       case((same_as_before, 0), else_=1).label("run_first"),
                       case((same_as_after, 0), else_=1).label("run_last"))
                .select_from(neighbours).subquery("numbered"))
    n = numbered.c
    ends = select(numbered).where(or_(n.run_first == 1, n.run_last == 1)).subquery("ends")
    r = ends.c
    key = (r.provider, r.referral_id, r.inferred)
    grouped = (select(*key, func.min(r.seq).label("first_seq"), func.max(r.seq).label("last_seq"),
                      func.min(r.starts).label("first_starts"))
               .group_by(*key).subquery("grouped"))
    g = grouped.c
    first, exit_, last = _proms.alias("first"), _proms.alias("exit"), _proms.alias("last")
    if query.exit_as_entry:
        borrows_exit = and_(func.coalesce(first.c.timepoint, "") != "assessment", exit_.c.timepoint == "discharge")
        entry_id = case((borrows_exit, exit_.c.response_id), else_=first.c.response_id)
        has_entry = case((or_(first.c.timepoint == "assessment", borrows_exit), 1), else_=0)
    else:
        entry_id, has_entry = first.c.response_id, case((first.c.timepoint == "assessment", 1), else_=0)
    provider_first = func.min(g.first_starts).over(partition_by=g.provider)
    inferred_label = literal("#").concat(cast(g.inferred - provider_first + 1, String))
    chosen = (select(first.c.subject_id, first.c.recording_organization,
                     func.coalesce(g.referral_id, inferred_label).label("episode"),
                     entry_id.label("entry_id"), has_entry.label("has_entry"), last.c.response_id.label("latest_id"),
                     last.c.authored.label("latest_authored"), last.c.referral_id.label("latest_referral"),
                     _team_of(last.c.referral_id).label("team"))
              .select_from(grouped.join(first, first.c.seq == g.first_seq)
                           .outerjoin(exit_, and_(exit_.c.seq == g.first_seq - 1, provider(exit_, first)))
                           .join(last, last.c.seq == g.last_seq)))
    episodes = chosen.subquery("chosen")
    e = episodes.c
    conditions = []
    if query.start is not None:
        conditions.append(e.latest_authored >= query.start)
    if query.teams:
        conditions.append(e.latest_referral.in_(_team_referrals(query)))
    entry, latest = _s.alias("entry"), _s.alias("latest")
    paired = e.entry_id != e.latest_id
    columns = [e.subject_id, e.recording_organization, e.episode, e.team,
               e.entry_id, e.latest_id, e.latest_authored, e.has_entry, case((paired, 1), else_=0).label("paired"),
               entry.c.timepoint.label("entry_timepoint"), latest.c.timepoint.label("latest_timepoint"),
               entry.c.authored_text.label("entry_authored"), latest.c.authored_text.label("latest_authored_text"),
               case((paired, latest.c.sqol_mean - entry.c.sqol_mean)).label("sqol_change"),
               _p.c.gender, _p.c.ethnic_category, _p.c.birth_date]
    for item in query.change_items:
        columns += [entry.c[f"rating_{item}"].label(f"entry_{item}"),
                    case((paired, latest.c[f"rating_{item}"] - entry.c[f"rating_{item}"])).label(f"change_{item}")]
    return (select(*columns)
            .select_from(episodes.join(entry, entry.c.response_id == e.entry_id)
                         .join(latest, latest.c.response_id == e.latest_id)
                         .outerjoin(_p, _p.c.patient_id == e.subject_id))
            .where(*conditions))


def _pairs(connection: Connection, query: OutcomeQuery) -> list[dict]:
    _fill_proms(connection, query)
    episodes = _episode_rows(query).subquery()
    statement = select(episodes).order_by(episodes.c.subject_id, episodes.c.latest_authored,
                                          episodes.c.recording_organization, episodes.c.episode)
    rows = [_plain(row) for row in connection.execute(statement)]
    _drop_proms(connection)
    return rows


def _episodes(connection: Connection, query: OutcomeQuery) -> list[dict]:
    scale = _scale(query)
    # Stored means are doubles of k/n (n <= 8): a difference that is exactly 1/8 is exact in binary,
    # and any other is at least 1/840 away from it, so `> 0.125` here agrees with change.py's Fraction.
    meaningful = float(MEANINGFUL_SQOL_CHANGE)
    low, high = (DISSATISFIED[0], DISSATISFIED[-1]), (SATISFIED[0], SATISFIED[-1])
    count_where = lambda condition: func.sum(case((condition, 1), else_=0))  # noqa: E731

    def sums(c) -> list:
        paired = c.paired == 1
        out = [("episodes", func.count()), ("paired", count_where(paired)),
               ("sqol_change_sum", func.sum(_units(c.sqol_change, scale))),
               ("sqol_change_n", func.count(c.sqol_change)),
               ("sqol_meaningful", count_where(c.sqol_change > meaningful))]
        for item in query.change_items:
            change, before = c[f"change_{item}"], c[f"entry_{item}"]
            from_low = and_(change.is_not(None), before.between(*low))
            from_high = and_(change.is_not(None), before.between(*high))
            # latest_sum_<item> is entry_sum + change_sum (the same rows: a change needs an entry rating)
            out += [(f"n_{item}", func.count(change)),
                    (f"entry_sum_{item}", func.sum(case((change.is_not(None), before)))),
                    (f"change_sum_{item}", func.sum(change)),
                    (f"improved_{item}", count_where(change >= RELIABLE_ITEM_CHANGE)),
                    (f"deteriorated_{item}", count_where(change <= -RELIABLE_ITEM_CHANGE)),
                    (f"low_n_{item}", count_where(from_low)),
                    (f"low_change_sum_{item}", func.sum(case((from_low, change)))),
                    (f"low_improved_{item}", count_where(and_(from_low, change >= RELIABLE_ITEM_CHANGE))),
                    (f"high_n_{item}", count_where(from_high)),
                    (f"high_change_sum_{item}", func.sum(case((from_high, change)))),
                    (f"high_deteriorated_{item}", count_where(and_(from_high, change <= -RELIABLE_ITEM_CHANGE)))]
        return out

    def flags(c) -> list:
        entered, paired = c.has_entry == 1, c.paired == 1
        return [("people_t1", count_where(entered)), ("people_t2", count_where(and_(entered, paired))),
                ("people_paired", count_where(paired))]

    columns = ["dimension", "stratum", "episodes", "people", "people_t1", "people_t2", "paired", "people_paired",
               "sqol_change_sum", "sqol_change_n", "sqol_meaningful"]
    for item in query.change_items:
        columns += [f"{name}_{item}" for name in ("n", "latest_sum", "entry_sum", "change_sum", "improved",
                                                  "deteriorated", "low_n", "low_change_sum", "low_improved",
                                                  "high_n", "high_change_sum", "high_deteriorated")]
    _fill_proms(connection, query)
    result = connection.execute(_by_stratum(_episode_rows(query), query, sums, flags))
    rows = []
    counts = ["episodes", "sqol_change_n", *[f"n_{item}" for item in query.change_items]]  # COUNT: 0 over no rows
    for row in map(dict, (r._mapping for r in result)):
        for item in query.change_items:
            entry, change = row[f"entry_sum_{item}"], row[f"change_sum_{item}"]
            row[f"latest_sum_{item}"] = None if entry is None or change is None else entry + change
        row.update((key, 0) for key in counts if row[key] is None)
        rows.append(row)
    _drop_proms(connection)
    return _in_order(rows, columns, ("sqol_change_sum",), scale)


# -- trend -----------------------------------------------------------------------------------------------
def _trend(connection: Connection, query: OutcomeQuery) -> list[dict]:
    outcome = _outcome()
    month = func.substr(_s.c.authored_text, 1, 7)
    scale = _scale(query)
    statement = (select(month.label("month"),
                        func.sum(case((outcome, 1), else_=0)).label("dialogs"),
                        func.count(func.distinct(case((outcome, _s.c.subject_id)))).label("people"),
                        func.sum(case((outcome, _units(_s.c.sqol_mean, scale)))).label("sqol_sum"),
                        func.count(case((outcome, _s.c.sqol_mean))).label("sqol_n"))
                 .where(*_counted(query, connection.dialect.name, windowed=True)).group_by(month).order_by(month))
    return _in_order(connection.execute(statement), ("month", "dialogs", "people", "sqol_sum", "sqol_n"),
                     ("sqol_sum",), scale)


def _dimension_label(dimension: str):
    # A constant, not a bound parameter: PostgreSQL cannot type a parameter inside UNION ALL.
    if dimension != "all" and dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}")
    return literal_column(f"'{dimension}'", String).label("dimension")


def _stratum(c, query: OutcomeQuery, dimension: str):
    """The SQL expression naming a row's stratum within a dimension."""
    if dimension == "all":
        return literal_column("'all'", String)
    if dimension == "organisation":
        return func.coalesce(c.recording_organization, NOT_RECORDED)
    if dimension == "team":
        return func.coalesce(c.team, NOT_RECORDED)
    if dimension == "gender":
        return func.coalesce(c.gender, NOT_RECORDED)
    if dimension == "ethnicity":
        groups = dict(query.ethnic_groups)
        return case(groups, value=c.ethnic_category, else_=NOT_RECORDED) if groups else literal_column(
            f"'{NOT_RECORDED}'", String)
    if dimension == "age-band":
        age = (literal(query.as_of) - c.birth_date) // 10000
        bands = list(query.age_bands)
        whens = [(age < lowest, bands[i - 1][1] if i else label) for i, (lowest, label) in enumerate(bands)]
        return case((c.birth_date.is_(None), NOT_RECORDED), *whens[1:], else_=bands[-1][1])
    raise ValueError(f"unknown dimension {dimension!r}")
