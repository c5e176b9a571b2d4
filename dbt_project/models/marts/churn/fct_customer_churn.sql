{#-
    Churn per customer as of the as-of date (CEM_DOMAIN.md): one row per customer with a
    purchase on or before it. The rules are in int_purchase_gaps_assessed_for_churn and
    int_customers_churn_assessed.

    A view: fct_customer_churn_stored keeps the columns that change with the customer's
    purchases, responses and CRM record, and this adds the days since the last purchase and
    the as-of date, which move for every customer with every build. Both read dim_as_of_date
    of their own generation (a scalar subquery, so a query reading neither column does not
    touch it). One select from one table, not the house style's CTEs: PostgreSQL merges
    such a view into the query reading it, so a lookup by customer_key uses the stored
    table's unique index.
-#}

{{ config(materialized='view') }}

select
    customer_key,
    segment,
    lifecycle_stage,
    churn_rule,
    last_nps_category_before_churn,
    threshold_days,
    median_gap_days,
    (select as_of_date from {{ ref('dim_as_of_date') }}) - last_purchase_date as days_since_last_purchase,
    last_csat_before_churn,
    last_ltr_before_churn,
    win_back_count,
    is_churned,
    is_satisfied_before_churn,
    is_won_back,
    first_purchase_date,
    last_purchase_date,
    churned_date,
    won_back_date,
    (select as_of_date from {{ ref('dim_as_of_date') }}) as as_of_date

from {{ ref('fct_customer_churn_stored') }}
