{#-
    Churn per customer as of the as-of date (CEM_DOMAIN.md): one row per customer with a
    purchase on or before it. The rules are in int_purchase_gaps_assessed_for_churn and
    int_customers_churn_assessed; this mart adds the customer's segment and the days since
    the last purchase (the one column that moves with the as-of date for every customer,
    so the incremental intermediate does not store it).

    The segment is the CRM record's, as in dim_customers (a CRM customer's key is its
    customer_id as text; a customer known only from sales or surveys has none: 'unknown'). It is
    read from the CRM staging view, not from dim_customers, so this mart is built beside
    dim_customers instead of after it, at the end of the chain of models a build waits for.
-#}

-- A unique index on the key: PostgreSQL enforces it, so its primary-key test and the audit
-- check the catalog instead of scanning a million rows on every build (and analysts look
-- customers up by it).
{{ config(indexes=[{'columns': ['customer_key'], 'unique': True}]) }}

with

churn as (

    select * from {{ ref('int_customers_churn_assessed') }}

),

crm_customers as (

    select * from {{ ref('stg_crm__customers') }}

),

final as (

    select
        churn.customer_key,
        coalesce(crm_customers.segment, 'unknown') as segment,
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
    left join crm_customers
        -- A CRM customer's key is its id as text (int_customers_resolved_across_sources), so
        -- the CRM side is cast, not the key: casting the key needed a digits-only check on
        -- every row first (an inferred key is not a number), and that regular expression
        -- was most of this model's time (4.3 s against 1.5-1.9 s at 1M customers).
        on churn.customer_key = cast(crm_customers.customer_id as text)

)

select * from final
