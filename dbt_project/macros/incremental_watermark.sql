{#-
    The watermark of an incremental fact: the newest raw `_loaded_at` (source_loaded_at) it
    has already taken in, read from the fact's OWN table. Under write-audit-publish the table
    a build starts from may be one or more generations old (marts_build holds the previous
    marts after a swap), so the watermark must come from {{ this }} and nowhere else: every
    raw row loaded after it is taken in again, whatever built the marts in between.
    '-infinity' for an empty table, so everything is new.

    Read once when the model runs and written into the SQL as a literal: as a subquery its
    value is unknown to the planner, which then expects a third of every table to be new and
    plans accordingly (minutes instead of seconds at a million customers).

    Assumes a load's rows are visible once a build reads a later _loaded_at: true when loads
    and builds take turns (the transform DAG runs after ingestion). A load transaction that
    started before and commits after a build's snapshot would be missed until a full refresh.
-#}
{% macro incremental_watermark() -%}
    {%- if execute and is_incremental() -%}
        {%- set query -%}
            select cast(coalesce(max(source_loaded_at), '-infinity'::timestamptz) as text) from {{ this }}
        {%- endset -%}
        {%- set loaded_at = run_query(query).columns[0].values()[0] -%}
        cast('{{ loaded_at }}' as timestamptz)
    {%- else -%}
        cast('-infinity' as timestamptz)
    {%- endif -%}
{%- endmacro %}
