{#-
    The stored part of fct_customer_repurchase (a view adding T and the as-of date to it):
    one row per customer with a purchase (an order not cancelled) on or before the as-of
    date, with every column that changes only when the customer's purchases do. T moves
    with the as-of date for every customer, so storing it meant rewriting a million rows
    on every build; without it, a build rewrites the customers whose purchases changed.

    Incremental by customer (macros/change_log.sql): a build recomputes the customers whose
    purchase days or product lines were recomputed since this table's own last build (which
    covers purchases the moving as-of date lets in: the intermediates find those) and keeps
    every other row. Under write-audit-publish it logs the customers it replaced
    (change_log_replaced_key), so the retired generation is caught up after the swap
    (cem_warehouse.transform.generations), as dim_customers is.
-#}

{#- the models whose change log it reads -#}
{%- set producers = ['int_orders_aggregated_to_purchase_days', 'int_order_lines_aggregated_to_customers'] %}

{{
    config(
        materialized='incremental',
        incremental_strategy='replace_changed_keys',
        unique_key='customer_key',
        change_log_key='customer_key',
        change_log_replaced_key='customer_key',
        change_log_producers=producers,
        on_schema_change='fail',
        pre_hook="{{ log_rebuilt_in_full() }}",
        post_hook=[
            "{{ record_change_position() }}",
            "{{ keep_row_count() }}",
            "{{ analyze_when_stale() }}",
        ],
        indexes=[{'columns': ['customer_key'], 'unique': True}],
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

-- Not filtered by the scope: joined to the customers in scope, the planner reads it by its
-- unique index or hashes it. Two filtered sets joined leave the plan to its guess of how
-- many keys the change log holds, and a guess of a hundred can compare every row of one
-- with every row of the other.
customer_lines as (

    select * from {{ ref('int_order_lines_aggregated_to_customers') }}

),

-- The customer's last purchase day carries their totals (int_orders_aggregated_to_purchase_days
-- sums them in its window pass), so this reads one row per customer. (Aggregating every
-- purchase day again took 10 s of each build at 1M customers.)
customers_summed as (

    select
        customer_key,
        purchase_day_number - 1 as frequency,
        purchase_date - first_purchase_date as recency_days,
        order_count_to_date as order_count,
        -- the mean value of the repeat purchase days: the first purchase day excluded
        round(repeat_revenue_to_date / nullif(purchase_day_number - 1, 0), 2) as monetary_value,
        revenue_to_date as revenue,
        gross_margin_to_date as gross_margin,
        first_purchase_date,
        purchase_date as last_purchase_date

    from purchase_days
    where next_purchase_date is null

),

final as (

    select
        customers_summed.customer_key,
        customers_summed.frequency,
        customers_summed.recency_days,
        customers_summed.order_count,
        coalesce(customer_lines.product_lines_bought, 0) as product_lines_bought,
        coalesce(customer_lines.upgrade_count, 0) as upgrade_count,
        customers_summed.monetary_value,
        customers_summed.revenue,
        customers_summed.gross_margin,
        customers_summed.frequency >= 1 as is_repeat_customer,
        coalesce(customer_lines.product_lines_bought, 0) > 1 as has_multiple_product_lines,
        coalesce(customer_lines.upgrade_count, 0) > 0 as has_upgraded,
        customers_summed.first_purchase_date,
        customers_summed.last_purchase_date,
        customer_lines.first_upgrade_date

    from customers_summed
    left join customer_lines
        on customers_summed.customer_key = customer_lines.customer_key

)

select * from final
