{#-
    The watermark of an incremental fact: the newest raw `_loaded_at` (source_loaded_at) it
    has already taken in, read from the fact's OWN table. Under write-audit-publish the table
    a build starts from may be one or more generations old (marts_build holds the previous
    marts after a swap), so the watermark must come from {{ this }} and nowhere else: every
    raw row loaded after it is taken in again, whatever built the marts in between.
    '-infinity' for an empty table, so everything is new.

    Assumes a load's rows are visible once a build reads a later _loaded_at: true when loads
    and builds take turns (the transform DAG runs after ingestion). A load transaction that
    started before and commits after a build's snapshot would be missed until a full refresh.
-#}
{% macro incremental_watermark() -%}
    (select coalesce(max(source_loaded_at), '-infinity'::timestamptz) from {{ this }})
{%- endmacro %}
