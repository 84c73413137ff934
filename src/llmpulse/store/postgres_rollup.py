"""SQL that builds summaries inside PostgreSQL: ``sqlite_rollup``'s queries in jsonb.

The same shapes and columns: minute rollups keep sketches and errors as jsonb arrays (one
entry per result), coarser tiers as jsonb objects ``{key: count}``; queries hand JSON text
to ``rollup.decode_summaries``. Sums are cast back to bigint (PostgreSQL widens them to
numeric) and ratios to double precision, so rows decode as SQLite's do.
"""

from __future__ import annotations

import functools

from llmpulse.store.rollup import sql_key
from llmpulse.store.sqlstore import (
    MERGED_SQL,
    METRIC_SQL,
    MINUTE,
    OUTAGE_SQL,
    PACK,
    SKETCH_COLUMNS,
    TARGETS_CTE,
    Groups,
    Tier,
    merge_source_sql,
)

_LOG2 = "(ln({}) / ln(2.0))"

_UNPACK = f"""
       CASE WHEN rl_packed IS NOT NULL THEN (rl_packed % {PACK})::float8 / 1000000 END
           AS rl_latest,
       CASE WHEN rl_packed IS NOT NULL THEN (rl_packed / {PACK})::float8 / 1000 END
           AS rl_latest_ts"""


@functools.cache
def raw_summary_sql(
    groups: Groups, where: str, sketches: bool = True, ratelimit: bool = True
) -> str:
    g0, g1, g2 = groups

    def array(value: str, column: str, sketch: bool = True) -> str:
        if sketch and not sketches:
            return "NULL::jsonb"
        return f"jsonb_agg({value}) FILTER (WHERE {column} IS NOT NULL)"

    packed = (
        f"round(ts * 1000)::bigint * {PACK} "
        "+ round(greatest(0.0, least(rl_utilization, 1.0)) * 1e6)::bigint"
    )
    rl_max, rl_packed = (
        "max(rl_utilization)",
        f"max(CASE WHEN rl_utilization IS NOT NULL THEN {packed} END)",
    )
    if not ratelimit:
        rl_max, rl_packed = "NULL::float8", "NULL::bigint"
    context = METRIC_SQL["context"]
    return f"""
SELECT g0, g1, g2, provider, model, total, ok, outage, errors, ttft_sketch, latency_sketch,
       tps_sketch, token_requests, input_tokens, output_tokens, cost_requests, cost_usd, rl_max,
       {_UNPACK}, first_ts, last_ts, context_sketch, context_max
FROM (
    SELECT {g0} AS g0, {g1} AS g1, {g2} AS g2, max(provider) AS provider, max(model) AS model,
           count(*) AS total, sum(ok)::bigint AS ok,
           count(*) FILTER (WHERE error_class IN ({OUTAGE_SQL})) AS outage,
           {array("error_class", "error_class", sketch=False)} AS errors,
           {array(sql_key("ttft_ms", _LOG2), "ttft_ms")} AS ttft_sketch,
           {array(sql_key("latency_ms", _LOG2), "latency_ms")} AS latency_sketch,
           {array(sql_key("tokens_per_s", _LOG2), "tokens_per_s")} AS tps_sketch,
           count(*) FILTER (WHERE input_tokens IS NOT NULL OR output_tokens IS NOT NULL)
               AS token_requests,
           coalesce(sum(input_tokens), 0)::bigint AS input_tokens,
           coalesce(sum(output_tokens), 0)::bigint AS output_tokens,
           count(cost_usd) AS cost_requests, coalesce(sum(cost_usd), 0)::float8 AS cost_usd,
           {rl_max} AS rl_max, {rl_packed} AS rl_packed,
           min(ts) AS first_ts, max(ts) AS last_ts,
           {array(sql_key(context, _LOG2), context)} AS context_sketch,
           {f"max({context})" if sketches else "NULL::float8"} AS context_max
    FROM results WHERE {where} GROUP BY 1, 2, 3
) AS raw"""


@functools.cache
def _raw_text_sql(groups: Groups, where: str, sketches: bool, ratelimit: bool) -> str:
    """``raw_summary_sql`` with its JSON as text, for ``rollup.decode_summaries``."""
    return f"""
SELECT g0, g1, g2, provider, model, total, ok, outage, errors::text, ttft_sketch::text,
       latency_sketch::text, tps_sketch::text, token_requests, input_tokens, output_tokens,
       cost_requests, cost_usd, rl_max, rl_latest, rl_latest_ts, first_ts, last_ts,
       context_sketch::text, context_max
FROM ({raw_summary_sql(groups, where, sketches, ratelimit)}) AS s"""


def _entries(column: str, arrays: bool) -> str:
    """``(k, n)`` rows of a jsonb array (a key per result) or object (key -> count)."""
    if arrays:
        return f"SELECT k, 1 AS n FROM jsonb_array_elements_text(src.{column}) AS e(k)"
    return f"SELECT k, v::bigint AS n FROM jsonb_each_text(src.{column}) AS e(k, v)"


@functools.cache
def merge_summary_sql(below: Tier, groups: Groups, where: str) -> str:
    arrays = below.period == MINUTE
    bins = " UNION ALL ".join(
        f"SELECT g0, g1, g2, {m} AS m, e.k, sum(e.n) AS n "
        f"FROM src CROSS JOIN LATERAL ({_entries(col, arrays)}) AS e GROUP BY g0, g1, g2, e.k"
        for m, col in enumerate(SKETCH_COLUMNS)
    )
    return f"""{merge_source_sql(below.table, groups, where)},
base AS (
    SELECT g0, g1, g2, max(provider) AS provider, max(model) AS model,
           sum(total)::bigint AS total, sum(ok)::bigint AS ok, sum(outage)::bigint AS outage,
           sum(token_requests)::bigint AS token_requests,
           sum(input_tokens)::bigint AS input_tokens,
           sum(output_tokens)::bigint AS output_tokens,
           sum(cost_requests)::bigint AS cost_requests, sum(cost_usd)::float8 AS cost_usd,
           max(rl_max) AS rl_max, min(first_ts) AS first_ts, max(last_ts) AS last_ts,
           max(context_max) AS context_max
    FROM src GROUP BY g0, g1, g2
),
rl AS (
    SELECT DISTINCT ON (g0, g1, g2) g0, g1, g2, rl_latest, rl_latest_ts
    FROM src WHERE rl_latest_ts IS NOT NULL
    ORDER BY g0, g1, g2, rl_latest_ts DESC, rl_latest DESC
),
err AS (
    SELECT g0, g1, g2, jsonb_object_agg(k, n) AS errors FROM (
        SELECT g0, g1, g2, e.k, sum(e.n) AS n
        FROM src CROSS JOIN LATERAL ({_entries("errors", arrays)}) AS e GROUP BY g0, g1, g2, e.k
    ) AS x GROUP BY g0, g1, g2
),
bins AS (
    SELECT g0, g1, g2, m, jsonb_object_agg(k, n) AS sketch FROM ({bins}) AS x
    GROUP BY g0, g1, g2, m
)
{MERGED_SQL}"""


@functools.cache
def tier_summary_sql(
    table: str, groups: tuple[str, str], where: str, sketches: bool, ratelimit: bool
) -> str:
    g0, g1 = groups

    def concat(column: str) -> str:
        return f"string_agg({column}::text, ',')" if sketches else "NULL"

    packed = f"round(rl_latest_ts * 1000)::bigint * {PACK} + round(rl_latest * 1e6)::bigint"
    rl_max, rl_packed = "max(rl_max)", f"max(CASE WHEN rl_latest_ts IS NOT NULL THEN {packed} END)"
    if not ratelimit:
        rl_max, rl_packed = "NULL::float8", "NULL::bigint"
    return f"""
SELECT g0, g1, '', provider, model, total, ok, outage, errors, ttft_sketch, latency_sketch,
       tps_sketch, token_requests, input_tokens, output_tokens, cost_requests, cost_usd, rl_max,
       {_UNPACK}, first_ts, last_ts, context_sketch, context_max
FROM (
    SELECT {g0} AS g0, {g1} AS g1, max(provider) AS provider, max(model) AS model,
           sum(total)::bigint AS total, sum(ok)::bigint AS ok, sum(outage)::bigint AS outage,
           string_agg(errors::text, ',') AS errors, {concat("ttft_sketch")} AS ttft_sketch,
           {concat("latency_sketch")} AS latency_sketch, {concat("tps_sketch")} AS tps_sketch,
           sum(token_requests)::bigint AS token_requests,
           sum(input_tokens)::bigint AS input_tokens,
           sum(output_tokens)::bigint AS output_tokens,
           sum(cost_requests)::bigint AS cost_requests,
           coalesce(sum(cost_usd), 0)::float8 AS cost_usd, {rl_max} AS rl_max,
           {rl_packed} AS rl_packed, min(first_ts) AS first_ts, max(last_ts) AS last_ts,
           {concat("context_sketch")} AS context_sketch,
           {"max(context_max)" if sketches else "NULL::float8"} AS context_max
    FROM {table} WHERE {where} GROUP BY 1, 2
) AS tier"""


@functools.cache
def tier_rows_sql(
    table: str, groups: tuple[str, str], where: str, sketches: bool, ratelimit: bool
) -> str:
    g0, g1 = groups
    sketch = (
        "ttft_sketch::text, latency_sketch::text, tps_sketch::text"
        if sketches
        else "NULL, NULL, NULL"
    )
    context = "context_sketch::text, context_max" if sketches else "NULL, NULL"
    rl = "rl_max, rl_latest, rl_latest_ts" if ratelimit else "NULL, NULL, NULL"
    return f"""
SELECT {g0}, {g1}, '', provider, model, total, ok, outage, errors::text, {sketch},
       token_requests, input_tokens, output_tokens, cost_requests, cost_usd, {rl},
       first_ts, last_ts, {context}
FROM {table} WHERE {where}"""


class PostgresDialect:
    """The SQL above, and the rest of what differs from SQLite, for ``SQLStore``."""

    tier_summary_sql = staticmethod(tier_summary_sql)
    tier_rows_sql = staticmethod(tier_rows_sql)
    merge_summary_sql = staticmethod(merge_summary_sql)

    @staticmethod
    def raw_summary_sql(
        groups: Groups, where: str, sketches: bool = True, ratelimit: bool = True
    ) -> str:
        return _raw_text_sql(groups, where, sketches, ratelimit)

    @staticmethod
    def rollup_select_sql(groups: Groups, where: str) -> str:
        return raw_summary_sql(groups, where)  # jsonb, for the jsonb columns

    @staticmethod
    def bucket(column: str, step: int) -> str:
        return f"(floor({column} / {step})::bigint * {step})"

    @staticmethod
    def key(column: str) -> str:
        return sql_key(column, _LOG2)

    @staticmethod
    def tag_values() -> tuple[str, str]:
        return (
            "results CROSS JOIN LATERAL jsonb_array_elements_text(results.tags::jsonb) AS t(tag)",
            "t.tag",
        )

    @staticmethod
    def json_first(column: str) -> str:
        return f"({column}::jsonb ->> 0)"

    @staticmethod
    def latest_per_target_sql(columns: str) -> str:
        # The newest row of each target from the end of its run in the (target, ts) indexes.
        return f"""{TARGETS_CTE}
            SELECT {columns} FROM targets CROSS JOIN LATERAL (
                SELECT * FROM results WHERE target = targets.name
                ORDER BY ts DESC, id DESC LIMIT 1
            ) AS r"""
