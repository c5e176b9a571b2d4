{#-
    Churn per customer as of the as-of date (CEM_DOMAIN.md): one row per customer with a
    purchase on or before it. The rules are in int_purchase_gaps_assessed_for_churn and
    int_customers_churn_assessed; this mart adds the customer's segment.
-#}

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
        churn.days_since_last_purchase,
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
        churn.as_of_date

    from churn
    left join customers
        on churn.customer_key = customers.customer_key

)

select * from final
