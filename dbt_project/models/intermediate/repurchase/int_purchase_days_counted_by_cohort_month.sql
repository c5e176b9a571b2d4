{#-
    The customers active per acquisition cohort and calendar month: the purchase days that
    stand for their customer in a month (active_month set, int_orders_aggregated_to_purchase_days)
    counted per first purchase month and month. What fct_cohort_retention reports.

    Kept by the purchase days' own writes (macros/counted_by_triggers.sql): their table's
    statement triggers add the cells of the rows each build inserts and take away those of
    the rows it deletes, so a build reads these few hundred cells instead of counting all
    4.8M purchase days again (1.2-1.3 s at 1M customers). Counted in full when the table
    is built, or when the purchase days' table was replaced since.
-#}

{%- set producer = 'int_orders_aggregated_to_purchase_days' %}

{%- set counting %}
select
    cast(first_purchase_month as text) || '|' || cast(active_month as text) as cohort_activity_cell_id,
    first_purchase_month as cohort_month,
    active_month as activity_month,
    count(*) as active_customers

from __counted_rows__
where active_month is not null
group by first_purchase_month, active_month
{%- endset %}

{{
    config(
        materialized='incremental',
        incremental_strategy='kept_by_producer_triggers',
        unique_key='cohort_activity_cell_id',
        counted_from=producer,
        counted_measures=['active_customers'],
        counted_select=counting,
        on_schema_change='fail',
        post_hook=[
            "{{ keep_counts_by_triggers() }}",
            "{{ set_not_null(['cohort_month', 'activity_month']) }}",
        ],
        indexes=[{'columns': ['cohort_activity_cell_id'], 'unique': True}],
    )
}}

{{ counted_rows(counting, ref(producer)) }}
