{#-
    The "buy till you die" repurchase summary per customer as of the as-of date
    (CEM_DOMAIN.md), one row per customer with a purchase (an order not cancelled) on or
    before it. Purchase days, not orders, are the unit: two orders on one day are one
    purchase.

    A view: fct_customer_repurchase_stored keeps the columns that change with the
    customer's purchases, and this adds T and the as-of date, which move for every customer
    with every build. Both read dim_as_of_date of their own generation (a scalar subquery,
    so a query reading neither column does not touch it). One select from one table, not
    the house style's CTEs: PostgreSQL merges such a view into the query reading it, so a
    lookup by customer_key uses the stored table's unique index.
-#}

{{ config(materialized='view') }}

select
    customer_key,
    frequency,
    recency_days,
    (select as_of_date from {{ ref('dim_as_of_date') }}) - first_purchase_date as t_days,
    order_count,
    product_lines_bought,
    upgrade_count,
    monetary_value,
    revenue,
    gross_margin,
    is_repeat_customer,
    has_multiple_product_lines,
    has_upgraded,
    first_purchase_date,
    last_purchase_date,
    first_upgrade_date,
    (select as_of_date from {{ ref('dim_as_of_date') }}) as as_of_date

from {{ ref('fct_customer_repurchase_stored') }}
