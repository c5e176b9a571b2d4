{#-
    One row per customer: dim_customers_stored, which keeps every column that changes with
    the customer's identifiers, orders, survey responses, referrals and CRM record, plus the
    lifecycle stage as of the as-of date (macro lifecycle_stage), from the dates
    fct_customer_churn_stored keeps of customers with a purchase on or before it; everyone
    else is a prospect.

    A view, so that the stage, which moves with the as-of date and every churn assessment,
    is stored nowhere: dim_customers_stored is built beside the chain of churn models
    instead of after it, and a customer whose stage alone changed is not recomputed there
    (docs/operations/marts.md, "Stop 50"), nor, since stop 70, in the churn tables. Both
    tables are marts of the same generation, so readers see them swapped in together, with
    the as-of date of that generation (dim_as_of_date).

    One select, no CTEs: PostgreSQL merges the view into the query reading it, so a lookup
    by customer_key uses the stored table's unique index, and a query that reads no
    lifecycle_stage does not join the churn table at all (a left join to a unique key whose
    columns are unused is removed).
-#}

{{ config(materialized='view') }}

select
    customers.customer_key,
    customers.customer_id,
    customers.sales_account_id,
    customers.customer_email,
    customers.segment,
    customers.region,
    customers.acquisition_channel,
    customers.loyalty_category,
    -- no purchase on or before the as-of date: a prospect
    case
        when churn.customer_key is null then 'prospect'
        else {{ lifecycle_stage('(select as_of_date from ' ~ ref('dim_as_of_date') ~ ')', relation='churn') | indent(8) }}
    end as lifecycle_stage,
    customers.order_count,
    customers.last_likelihood_to_recommend,
    customers.revenue,
    customers.refunded_amount,
    customers.net_revenue,
    customers.gross_margin,
    customers.net_margin,
    customers.referrals_made,
    customers.is_inferred,
    customers.is_archived,
    customers.has_email_consent,
    customers.is_cancelled,
    customers.is_referrer,
    customers.acquisition_date,
    customers.first_order_date,
    customers.last_order_date,
    customers.last_ltr_responded_date,
    customers.first_seen_at,
    customers.cancelled_at,
    customers.last_ltr_responded_at

from {{ ref('dim_customers_stored') }} as customers
left join {{ ref('fct_customer_churn_stored') }} as churn
    on customers.customer_key = churn.customer_key
