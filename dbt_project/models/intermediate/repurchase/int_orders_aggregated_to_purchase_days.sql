{#-
    One row per customer and purchase day, as of the build's as-of date. A purchase is an
    order not cancelled (CEM_DOMAIN.md); several orders on one day are one purchase day,
    the unit of repurchase frequency, inter-purchase gaps and churn.
-#}

with

orders as (

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
        lag(purchase_date) over customer_days as previous_purchase_date,
        lead(purchase_date) over customer_days as next_purchase_date

    from purchase_days
    window customer_days as (partition by customer_key order by purchase_date asc)

)

select * from final
