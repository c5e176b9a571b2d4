"""Evaluate the semantic layer's metrics (dbt ``metrics:``) on the published marts.

The metrics are defined once, in ``dbt_project/models/marts/semantic/``. MetricFlow is the
full query engine for them; this evaluator covers what `cem metrics` and the tests need:
simple, ratio and derived metrics over all rows, optionally split by one dimension of
the metric's semantic model. It reads the definitions from dbt's parsed
manifest, so it cannot drift from them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from psycopg import sql

from cem_warehouse.errors import CemError
from cem_warehouse.transform.publish import PUBLISHED_SCHEMA
from cem_warehouse.warehouse.connection import connect
from cem_warehouse.warehouse.settings import WarehouseLocation

_AGGREGATIONS = {
    "sum": "sum({})",
    "count": "count({})",
    "count_distinct": "count(distinct {})",
    "average": "avg({})",
    "min": "min({})",
    "max": "max({})",
}

ALL = "(all)"


@dataclass(frozen=True)
class Measure:
    name: str
    table: str
    aggregation: str
    expr: str
    dimensions: dict[str, str]  # dimension name -> SQL expression


class SemanticLayer:
    def __init__(self, manifest: dict):
        self.metrics = {m["name"]: m for m in manifest.get("metrics", {}).values()}
        self.measures: dict[str, Measure] = {}
        for model in manifest.get("semantic_models", {}).values():
            # Time dimensions group at the granularity stored in the column.
            dimensions = {
                d["name"]: d.get("expr") or d["name"] for d in model.get("dimensions", [])
            }
            for measure in model.get("measures", []):
                self.measures[measure["name"]] = Measure(
                    name=measure["name"],
                    table=model["node_relation"]["alias"],
                    aggregation=measure["agg"],
                    expr=measure.get("expr") or measure["name"],
                    dimensions=dimensions,
                )

    @classmethod
    def from_manifest(cls, path: Path) -> SemanticLayer:
        return cls(json.loads(path.read_text()))

    def _measure_values(
        self, location: WarehouseLocation, measure: Measure, by: str | None
    ) -> dict[str, Decimal | None]:
        if measure.aggregation not in _AGGREGATIONS:
            raise CemError(
                f"measure {measure.name}: aggregation {measure.aggregation} is not supported here"
            )
        if by is not None and by not in measure.dimensions:
            raise CemError(
                f"measure {measure.name} (table {measure.table}) has no dimension {by!r}; "
                f"it has {', '.join(sorted(measure.dimensions)) or 'none'}"
            )
        value = sql.SQL(_AGGREGATIONS[measure.aggregation].format(measure.expr))
        group = sql.SQL(
            f"coalesce(cast({measure.dimensions[by]} as text), 'unknown')" if by else f"'{ALL}'"
        )
        query = sql.SQL("select {group} as grp, {value} from {table} group by 1").format(
            group=group, value=value, table=sql.Identifier(PUBLISHED_SCHEMA, measure.table)
        )
        with connect(location) as conn:
            return {row[0]: row[1] for row in conn.execute(query)}

    def dimensions(self, name: str) -> set[str]:
        """The dimensions ``name`` can be split by: those every one of its measures has."""
        params = self.metrics[name]["type_params"]
        kind = self.metrics[name]["type"]
        if kind == "simple":
            return set(self.measures[params["measure"]["name"]].dimensions)
        parts = (
            [params["numerator"]["name"], params["denominator"]["name"]]
            if kind == "ratio"
            else [m["name"] for m in params.get("metrics") or []]
        )
        return set.intersection(*(self.dimensions(part) for part in parts)) if parts else set()

    def evaluate(
        self, location: WarehouseLocation, name: str, by: str | None = None
    ) -> dict[str, Decimal | None]:
        """The metric's value overall (key ``(all)``) or per value of the dimension ``by``."""
        if name not in self.metrics:
            raise CemError(
                f"no metric {name!r}; the semantic layer defines {', '.join(sorted(self.metrics))}"
            )
        metric = self.metrics[name]
        params = metric["type_params"]
        kind = metric["type"]
        if kind == "simple":
            return self._measure_values(location, self.measures[params["measure"]["name"]], by)
        if kind == "ratio":
            numerator = self.evaluate(location, params["numerator"]["name"], by)
            denominator = self.evaluate(location, params["denominator"]["name"], by)
            return {
                group: (
                    None
                    if not denominator.get(group) or numerator.get(group) is None
                    else Decimal(numerator[group]) / Decimal(denominator[group])
                )
                for group in denominator
            }
        if kind == "derived":
            inputs = {m["name"]: self.evaluate(location, m["name"], by) for m in params["metrics"]}
            groups = sorted(set().union(*(values.keys() for values in inputs.values())))
            results = {}
            with connect(location) as conn:
                for group in groups:
                    # Postgres evaluates the metric's own expression, with the inputs as numerics.
                    names = list(inputs)
                    query = sql.SQL("select {expr} from (select {columns}) as inputs").format(
                        expr=sql.SQL(params["expr"]),
                        columns=sql.SQL(", ").join(
                            sql.SQL("cast({} as numeric) as {}").format(
                                sql.Literal(inputs[n].get(group)), sql.Identifier(n)
                            )
                            for n in names
                        ),
                    )
                    results[group] = conn.execute(query).fetchone()[0]
            return results
        raise CemError(
            f"metric {name}: type {kind} is not supported by this evaluator (use MetricFlow)"
        )
