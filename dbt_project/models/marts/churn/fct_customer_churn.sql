{#-
    Churn per customer as of the as-of date (CEM_DOMAIN.md): one row per customer with a
    purchase on or before it. The rules are in int_purchase_gaps_assessed_for_churn and
    int_customers_churn_assessed; this mart adds the customer's segment and the days since
    the last purchase (the one column that moves with the as-of date for every customer,
    so the incremental intermediate does not store it).
-#}

-- A unique index on the key: PostgreSQL enforces it, so its primary-key test and the audit
-- check the catalog instead of scanning a million rows on every build (and analysts look
-- customers up by it).
{{ config(indexes=[{'columns': ['customer_key'], 'unique': True}]) }}

with

churn as (

    select * from {{ ref('int_customers_churn_assessed') }}

),

customers as (

    select * from {{ ref('dim_customers') }}

),

final as (

    select
        churn.customer_key,
        coalesce(customers.segment, 'unknown') as segment,
        churn.lifecycle_stage,
        churn.churn_rule,
        churn.last_nps_category_before_churn,
        churn.threshold_days,
        churn.median_gap_days,
        {{ as_of_date() }} - churn.last_purchase_date as days_since_last_purchase,
        churn.last_csat_before_churn,
        churn.last_ltr_before_churn,
        churn.win_back_count,
        churn.is_churned,
        churn.is_satisfied_before_churn,
        churn.is_won_back,
        churn.first_purchase_date,
        churn.last_purchase_date,
        churn.churned_date,
        churn.won_back_date,
        {{ as_of_date() }} as as_of_date

    from churn
    left join customers
        on churn.customer_key = customers.customer_key

)

select * from final
