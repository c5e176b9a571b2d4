{#-
    The "buy till you die" repurchase summary per customer as of the as-of date
    (CEM_DOMAIN.md), one row per customer with a purchase (an order not cancelled) on or
    before it. Purchase days, not orders, are the unit: two orders on one day are one
    purchase.
-#}

-- A unique index on the key: PostgreSQL enforces it, so its primary-key test and the audit
-- check the catalog instead of scanning a million rows on every build (and analysts look
-- customers up by it).
{{ config(indexes=[{'columns': ['customer_key'], 'unique': True}]) }}

with

purchase_days as (

    select * from {{ ref('int_orders_aggregated_to_purchase_days') }}

),

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
        {{ as_of_date() }} - first_purchase_date as t_days,
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
        customers_summed.t_days,
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
        customer_lines.first_upgrade_date,
        {{ as_of_date() }} as as_of_date

    from customers_summed
    left join customer_lines
        on customers_summed.customer_key = customer_lines.customer_key

)

select * from final
