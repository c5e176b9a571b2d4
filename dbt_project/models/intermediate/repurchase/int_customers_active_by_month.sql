{#-
    One row per customer and calendar month with a purchase (an order not cancelled) on or
    before the as-of date, with the customer's acquisition cohort (the month of their first
    purchase): what fct_cohort_retention counts.

    Why it exists: cohort retention is an aggregate over every customer, rebuilt on every
    build, and finding each customer's months among every purchase day read all 4.8M of
    them (about 3 s of each one-day build at 1M customers). Kept by customer here, the mart
    counts one narrow table instead.

    A customer's first purchase day of a month stands for the customer in that month, so
    this is one pass over the purchase days, without a count(distinct).

    Incremental by customer (macros/change_log.sql): a build recomputes the customers whose
    purchase days were replaced since this table's own last build. The purchase days cover
    what the moving as-of date lets in (see there); nothing here depends on it otherwise.
-#}

{#- the models whose change log it reads -#}
{%- set producers = ['int_orders_aggregated_to_purchase_days'] %}

{{
    config(
        materialized='incremental',
        incremental_strategy='replace_changed_keys',
        unique_key='customer_month_id',
        change_log_key='customer_key',
        change_log_skip_unchanged=true,
        change_log_producers=producers,
        on_schema_change='fail',
        post_hook=[
            "{{ record_change_position() }}",
            "{{ set_not_null(['customer_month_id', 'customer_key', 'cohort_month', 'activity_month']) }}",
            "{{ analyze_when_stale() }}",
        ],
        indexes=[{'columns': ['customer_month_id'], 'unique': True}, {'columns': ['customer_key']}],
    )
}}

-- depends_on: {{ ref('int_as_of_date') }}
{%- set changes = change_log_state(producers) %}

with

{% if not changes.full -%}
customers_in_scope as materialized (

    {{ changed_keys_since_last_build(changes) | indent(4) }}

),

{% endif -%}

purchase_days as (

    select * from {{ ref('int_orders_aggregated_to_purchase_days') }}
    {{ where_in_scope(changes) }}

),

first_days_of_months as (

    select
        customer_key,
        {{ month_start('first_purchase_date') }} as cohort_month,
        {{ month_start('purchase_date') }} as activity_month

    from purchase_days
    where previous_purchase_date is null
        or {{ month_start('previous_purchase_date') }} < {{ month_start('purchase_date') }}

),

final as (

    select
        customer_key || '|' || cast(activity_month as text) as customer_month_id,
        customer_key,
        cohort_month,
        activity_month

    from first_days_of_months

)

select * from final
