{#-
    One row per customer and purchase day, as of the build's as-of date. A purchase is an
    order not cancelled (CEM_DOMAIN.md); several orders on one day are one purchase day,
    the unit of repurchase frequency, inter-purchase gaps and churn.

    Incremental by customer (macros/change_log.sql): a build recomputes the customers whose
    orders fct_orders replaced since the last build, and those with an order dated in the
    days the as-of date moved over; every other customer's days are as they were. It logs
    each customer it changed with the first purchase day it replaced or wrote
    (change_log_replaced_from): a customer's days before that one did not change, and the
    churn gaps recompute the customer from there.
-#}

{#- One index, unique on the grain (customer_key, purchase_date): it enforces the key and
    serves every lookup by customer. purchase_day_id, the grain as one text, had a unique
    index of its own beside a customer_key index until stop 65, which only enforced the
    key. Inserting 66-74k new purchase days of scattered customers among the 4.9M of a kept
    1M-customer warehouse (rolled back) took 0.39-0.68 s with those two and 0.28-0.36 s
    with this one alone (docs/operations/marts.md, "Stop 65"). -#}

{#- the models whose change log it reads -#}
{%- set producers = ['fct_orders'] %}

{{
    config(
        materialized='incremental',
        incremental_strategy='replace_changed_keys',
        unique_key='purchase_day_id',
        change_log_key='customer_key',
        change_log_skip_unchanged=true,
        change_log_producers=producers,
        change_log_replaced_key='customer_key',
        change_log_replaced_from='purchase_date',
        on_schema_change='fail',
        pre_hook="{{ log_rebuilt_in_full() }}",
        post_hook=[
            "{{ record_change_position() }}",
            "{{ set_not_null(['purchase_day_id', 'customer_key', 'purchase_date']) }}",
        ],
        indexes=[{'columns': ['customer_key', 'purchase_date'], 'unique': True}],
    )
}}

{%- set changes = change_log_state(producers) %}

with

orders as not materialized (

    select * from {{ ref('fct_orders') }}

),

purchases as (

    select
        customer_key,
        revenue,
        gross_margin,
        ordered_date

    from orders
    where not is_cancelled
        and customer_key is not null
        and ordered_date <= {{ as_of_date() }}
        {%- if not changes.full %}
        -- in key order (macros/change_log.sql, keys_in_order)
        and customer_key in (
            {% call keys_in_order() -%}
            {{ changed_keys_since_last_build(changes) | indent(12) }}

            union

            select customer_key
            from orders
            where ordered_date > cast('{{ changes.previous_as_of }}' as date)
                and ordered_date <= {{ as_of_date() }}
            {%- endcall %}
        )
        {%- endif %}

),

purchase_days as (

    select
        customer_key,
        ordered_date as purchase_date,
        count(*) as order_count,
        sum(revenue) as revenue,
        sum(gross_margin) as gross_margin

    from purchases
    group by 1, 2

),

final as (

    select
        customer_key || '|' || cast(purchase_date as text) as purchase_day_id,
        customer_key,
        row_number() over customer_days as purchase_day_number,
        order_count,
        purchase_date - lag(purchase_date) over customer_days as days_since_previous_purchase,
        revenue,
        gross_margin,
        purchase_date,
        -- The customer's figures up to and including this day, from the same window pass:
        -- their last day holds the customer's totals, so per-customer readers (cohorts,
        -- the repurchase summary) read one row per customer instead of aggregating every
        -- purchase day again.
        first_value(purchase_date) over customer_days as first_purchase_date,
        cast(sum(order_count) over customer_days as bigint) as order_count_to_date,
        sum(revenue) over customer_days as revenue_to_date,
        sum(revenue) over customer_days - first_value(revenue) over customer_days
        as repeat_revenue_to_date,
        sum(gross_margin) over customer_days as gross_margin_to_date,
        lag(purchase_date) over customer_days as previous_purchase_date,
        lead(purchase_date) over customer_days as next_purchase_date,
        -- The calendar months fct_cohort_retention counts, worked out here, where an
        -- incremental build computes them for the recomputed customers only. Computed by the
        -- cohort mart on every build, the months of three dates for each of 4.8M purchase
        -- days were more than half of its 2.2 s select at 1M customers (1.0 s counting
        -- stored months).
        {{ month_start('first_value(purchase_date) over customer_days') }} as first_purchase_month,
        -- the customer's first purchase day of its month stands for the customer in that
        -- month: counting the rows that have it counts distinct customers active in a month
        case
            when lag(purchase_date) over customer_days is null
                or {{ month_start('lag(purchase_date) over customer_days') }}
                < {{ month_start('purchase_date') }}
                then {{ month_start('purchase_date') }}
        end as active_month

    from purchase_days
    window customer_days as (partition by customer_key order by purchase_date asc)

)

select * from final
