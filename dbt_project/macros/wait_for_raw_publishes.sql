{#-
    Pre-hook of every incremental model (set for all marts in dbt_project.yml; a no-op for
    the others): lock the raw-publish gate in SHARE mode for the model's transaction. Loads
    lock it ROW EXCLUSIVE while they publish into raw, and stamp their rows with the clock
    read AFTER taking it (cem_warehouse.load.tables.begin_raw_publish). The two modes
    conflict, so while an incremental model reads raw no publish is half-way, and any row
    committed later carries a _loaded_at newer than everything this build saw: the
    watermark (incremental_watermark) can never step over a row. SHARE does not conflict
    with itself, so incremental models still run side by side. Publishes wait for the
    models' transactions; they do not fail.
-#}
{#- `reads_by_watermark`: a model that is not incremental but reads raw from an incremental
    model's watermark on its behalf (int_orders_changed_since_last_build for fct_orders). -#}
{% macro wait_for_raw_publishes(reads_by_watermark=false) -%}
    {%- if reads_by_watermark or model.config.materialized == 'incremental' -%}
        lock table ops.raw_publish_gate in share mode
    {%- endif -%}
{%- endmacro %}
