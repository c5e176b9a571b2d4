{#-
    Pre-hook of every incremental model (set for all marts in dbt_project.yml; a no-op for
    the others): take the raw-publish lock exclusively for the
    model's transaction. Loads hold it shared while they publish into raw and stamp their
    rows with the clock read AFTER taking it (cem_warehouse.load.tables.begin_raw_publish).
    So while an incremental model reads raw, no publish is half-way, and any row committed
    later carries a _loaded_at newer than everything this build saw: the watermark
    (incremental_watermark) can never step over a row. Publishes wait for the model's
    transaction, a few seconds; they do not fail.
-#}
{% macro wait_for_raw_publishes() -%}
    {%- if model.config.materialized == 'incremental' -%}
        select pg_advisory_xact_lock(hashtext('cem_warehouse.raw_publish'))
    {%- endif -%}
{%- endmacro %}
