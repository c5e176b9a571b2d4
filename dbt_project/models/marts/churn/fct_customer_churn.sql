{#-
    Churn per customer as of the as-of date (CEM_DOMAIN.md): one row per customer with a
    purchase on or before it. The rules are in int_purchase_gaps_assessed_for_churn and
    fct_customer_churn_stored.

    A view: fct_customer_churn_stored keeps the columns that change with the customer's
    purchases, responses and CRM record, and this adds what moves with the as-of date alone:
    the days since the last purchase, the lifecycle stage (macro lifecycle_stage, from the
    stored dates) and the as-of date itself. Each reads dim_as_of_date of its own generation
    (a scalar subquery, computed once per query, and not at all by a query reading none of
    them). One select from one table, not the house style's CTEs: PostgreSQL merges
    such a view into the query reading it, so a lookup by customer_key uses the stored
    table's unique index.
-#}

{{ config(materialized='view') }}

select
    customer_key,
    segment,
    {{ lifecycle_stage('(select as_of_date from ' ~ ref('dim_as_of_date') ~ ')') | indent(4) }} as lifecycle_stage,
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
