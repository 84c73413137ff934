"""SQL that builds summaries inside SQLite: raw rows -> groups, and rollup rows -> coarser tiers.

Each yields ``g0, g1, g2`` (the group) followed by ``rollup.SUMMARY_COLUMNS``. Minute rollups
keep sketches and errors as JSON arrays (one entry per result: built in a single GROUP BY
pass); coarser tiers keep JSON objects ``{key: count}``, merged from the tier below by
``json_each`` when they are written. Queries let SQL sum the scalars and concatenate the JSON
of each group (``tier_summary_sql``); Python counts the bins (``rollup.decode_summaries``),
which is faster per bin than ``json_each`` once rows hold a hundred bins.
"""

from __future__ import annotations

import functools

from llmpulse.store.rollup import sql_key
from llmpulse.store.sqlstore import (
    MERGED_SQL,
    METRIC_SQL,
    OUTAGE_SQL,
    PACK,
    SKETCH_COLUMNS,
    TARGETS_CTE,
    Groups,
    Tier,
    merge_source_sql,
)


def _entry_key(column: str) -> str:
    """The key of a json_each entry: an array holds keys, an object maps key -> count."""
    return f"iif(substr(src.{column}, 1, 1) = '[', CAST(j.value AS TEXT), j.key)"


def _entry_count(column: str) -> str:
    return f"iif(substr(src.{column}, 1, 1) = '[', 1, j.value)"


@functools.cache  # a query's text depends on its shape only: built once
def raw_summary_sql(
    groups: Groups, where: str, sketches: bool = True, ratelimit: bool = True
) -> str:
    """Summaries of the ``results`` rows matching ``where``, grouped by ``groups``.

    One GROUP BY pass, no per-key grouping: sketches and errors come out as JSON arrays with
    one entry per result (a minute holds a handful), which ``merge_summary_sql`` and
    ``rollup.decode_summaries`` count. The latest utilization is found by max() over the
    timestamp (ms) and the utilization (1e-6) packed into one integer. Without ``sketches``
    or ``ratelimit`` those columns are NULL: every aggregate costs time per row.
    """
    g0, g1, g2 = groups

    def array(value: str, column: str, sketch: bool = True) -> str:
        if sketch and not sketches:
            return "NULL"
        return (
            f"CASE WHEN count({column}) THEN json_group_array({value}) "
            f"FILTER (WHERE {column} IS NOT NULL) END"
        )

    packed = (
        f"CAST(round(ts * 1000) AS INTEGER) * {PACK} "
        "+ CAST(round(max(0.0, min(rl_utilization, 1.0)) * 1e6) AS INTEGER)"
    )
    rl_max, rl_packed = (
        "max(rl_utilization)",
        f"max(CASE WHEN rl_utilization IS NOT NULL THEN {packed} END)",
    )
    if not ratelimit:
        rl_max = rl_packed = "NULL"
    context = METRIC_SQL["context"]
    return f"""
SELECT g0, g1, g2, provider, model, total, ok, outage, errors, ttft_sketch, latency_sketch,
       tps_sketch, token_requests, input_tokens, output_tokens, cost_requests, cost_usd, rl_max,
       CASE WHEN rl_packed IS NOT NULL THEN (rl_packed % {PACK}) / 1e6 END AS rl_latest,
       CASE WHEN rl_packed IS NOT NULL THEN (rl_packed / {PACK}) / 1000.0 END AS rl_latest_ts,
       first_ts, last_ts, context_sketch, context_max
FROM (
    SELECT {g0} AS g0, {g1} AS g1, {g2} AS g2, max(provider) AS provider, max(model) AS model,
           count(*) AS total, sum(ok) AS ok,
           count(CASE WHEN error_class IN ({OUTAGE_SQL}) THEN 1 END) AS outage,
           {array("error_class", "error_class", sketch=False)} AS errors,
           {array(sql_key("ttft_ms"), "ttft_ms")} AS ttft_sketch,
           {array(sql_key("latency_ms"), "latency_ms")} AS latency_sketch,
           {array(sql_key("tokens_per_s"), "tokens_per_s")} AS tps_sketch,
           count(CASE WHEN input_tokens IS NOT NULL OR output_tokens IS NOT NULL THEN 1 END)
               AS token_requests,
           coalesce(sum(input_tokens), 0) AS input_tokens,
           coalesce(sum(output_tokens), 0) AS output_tokens,
           count(cost_usd) AS cost_requests, total(cost_usd) AS cost_usd,
           {rl_max} AS rl_max, {rl_packed} AS rl_packed,
           min(ts) AS first_ts, max(ts) AS last_ts,
           {array(sql_key(context), context)} AS context_sketch,
           {f"max({context})" if sketches else "NULL"} AS context_max
    FROM results WHERE {where} GROUP BY 1, 2, 3
)"""


def merge_summary_sql(table: str, groups: Groups, where: str) -> str:
    """Rollup rows of ``table`` matching ``where``, merged per group."""
    bins = " UNION ALL ".join(
        f"SELECT g0, g1, g2, {m} AS m, {_entry_key(col)} AS k, sum({_entry_count(col)}) AS n "
        f"FROM src, json_each(src.{col}) AS j GROUP BY g0, g1, g2, k"
        for m, col in enumerate(SKETCH_COLUMNS)
    )
    return f"""{merge_source_sql(table, groups, where)},
base AS (
    SELECT g0, g1, g2, max(provider) AS provider, max(model) AS model, sum(total) AS total,
           sum(ok) AS ok, sum(outage) AS outage, sum(token_requests) AS token_requests,
           sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
           sum(cost_requests) AS cost_requests, total(cost_usd) AS cost_usd,
           max(rl_max) AS rl_max, min(first_ts) AS first_ts, max(last_ts) AS last_ts,
           max(context_max) AS context_max
    FROM src GROUP BY g0, g1, g2
),
rl AS (
    SELECT g0, g1, g2, rl_latest, max(rl_latest_ts) AS rl_latest_ts
    FROM src WHERE rl_latest_ts IS NOT NULL GROUP BY g0, g1, g2
),
err AS (
    SELECT g0, g1, g2, json_group_object(k, n) AS errors FROM (
        SELECT g0, g1, g2, {_entry_key("errors")} AS k, sum({_entry_count("errors")}) AS n
        FROM src, json_each(src.errors) AS j GROUP BY g0, g1, g2, k
    ) GROUP BY g0, g1, g2
),
bins AS (
    SELECT g0, g1, g2, m, json_group_object(k, n) AS sketch FROM ({bins})
    GROUP BY g0, g1, g2, m
)
{MERGED_SQL}"""


@functools.cache
def tier_summary_sql(
    table: str, groups: tuple[str, str], where: str, sketches: bool, ratelimit: bool
) -> str:
    """Rollup rows of ``table`` matching ``where``, one row per group ``(g0, g1)``: scalars
    summed here, errors and sketches concatenated (``group_concat``: comma-separated JSON
    values) for ``rollup.decode_summaries``. Without ``sketches`` or ``ratelimit`` those
    columns are NULL. The latest utilization is packed as in ``raw_summary_sql`` (rollups
    keep it at that precision already), so that one max() finds it.
    """
    g0, g1 = groups

    def concat(column: str) -> str:
        return f"group_concat({column})" if sketches else "NULL"

    packed = (
        f"CAST(round(rl_latest_ts * 1000) AS INTEGER) * {PACK} "
        "+ CAST(round(rl_latest * 1e6) AS INTEGER)"
    )
    rl_max, rl_packed = "max(rl_max)", f"max(CASE WHEN rl_latest_ts IS NOT NULL THEN {packed} END)"
    if not ratelimit:
        rl_max = rl_packed = "NULL"
    return f"""
SELECT g0, g1, '', provider, model, total, ok, outage, errors, ttft_sketch, latency_sketch,
       tps_sketch, token_requests, input_tokens, output_tokens, cost_requests, cost_usd, rl_max,
       CASE WHEN rl_packed IS NOT NULL THEN (rl_packed % {PACK}) / 1e6 END AS rl_latest,
       CASE WHEN rl_packed IS NOT NULL THEN (rl_packed / {PACK}) / 1000.0 END AS rl_latest_ts,
       first_ts, last_ts, context_sketch, context_max
FROM (
    SELECT {g0} AS g0, {g1} AS g1, max(provider) AS provider, max(model) AS model,
           sum(total) AS total, sum(ok) AS ok, sum(outage) AS outage,
           group_concat(errors) AS errors, {concat("ttft_sketch")} AS ttft_sketch,
           {concat("latency_sketch")} AS latency_sketch, {concat("tps_sketch")} AS tps_sketch,
           sum(token_requests) AS token_requests, sum(input_tokens) AS input_tokens,
           sum(output_tokens) AS output_tokens, sum(cost_requests) AS cost_requests,
           total(cost_usd) AS cost_usd, {rl_max} AS rl_max, {rl_packed} AS rl_packed,
           min(first_ts) AS first_ts, max(last_ts) AS last_ts,
           {concat("context_sketch")} AS context_sketch,
           {"max(context_max)" if sketches else "NULL"} AS context_max
    FROM {table} WHERE {where} GROUP BY 1, 2
)"""


@functools.cache
def tier_rows_sql(
    table: str, groups: tuple[str, str], where: str, sketches: bool, ratelimit: bool
) -> str:
    """The rows of ``table`` matching ``where`` ungrouped, in ``tier_summary_sql``'s columns,
    for the caller to merge: cheaper when a group holds a row or two (one period of one
    target), as SQL's aggregates cost more per row than Python's merge."""
    g0, g1 = groups
    sketch = "ttft_sketch, latency_sketch, tps_sketch" if sketches else "NULL, NULL, NULL"
    context = "context_sketch, context_max" if sketches else "NULL, NULL"
    rl = "rl_max, rl_latest, rl_latest_ts" if ratelimit else "NULL, NULL, NULL"
    return f"""
SELECT {g0}, {g1}, '', provider, model, total, ok, outage, errors, {sketch},
       token_requests, input_tokens, output_tokens, cost_requests, cost_usd, {rl},
       first_ts, last_ts, {context}
FROM {table} WHERE {where}"""


class SQLiteDialect:
    """The SQL above, and the rest of what differs from PostgreSQL, for ``SQLStore``."""

    raw_summary_sql = rollup_select_sql = staticmethod(raw_summary_sql)
    tier_summary_sql = staticmethod(tier_summary_sql)
    tier_rows_sql = staticmethod(tier_rows_sql)

    @staticmethod
    def bucket(column: str, step: int) -> str:
        return f"CAST({column} / {step} AS INTEGER) * {step}"

    @staticmethod
    def merge_summary_sql(below: Tier, groups: Groups, where: str) -> str:
        return merge_summary_sql(below.table, groups, where)

    @staticmethod
    def key(column: str) -> str:
        return sql_key(column)

    @staticmethod
    def tag_values() -> tuple[str, str]:
        return "results, json_each(results.tags)", "json_each.value"

    @staticmethod
    def json_first(column: str) -> str:
        return f"json_extract({column}, '$[0]')"

    @staticmethod
    def latest_per_target_sql(columns: str) -> str:
        # The newest row of each target from the end of its run in the (target, ts) index.
        return f"""{TARGETS_CTE}
            SELECT {columns} FROM targets
            JOIN results AS r ON r.id = (
                SELECT id FROM results WHERE target = targets.name
                ORDER BY ts DESC, id DESC LIMIT 1
            )"""
