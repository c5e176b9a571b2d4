{#-
    One row per dim_customers row: what fct_advocacy_by_loyalty_category counts of the
    customer, as of the as-of date. Its loyalty category (dim_customers), whether and how
    they bought (fct_customer_repurchase_stored: purchase days, product lines, revenue and
    margin), whether they are churned (their last purchase day's gap in
    int_purchase_gaps_assessed_for_churn) and whether they referred
    someone on or before the as-of date (fct_referrals).

    Why it exists: the advocacy mart is an aggregate over every customer, rebuilt on every
    build, and joining a million customer keys of three tables took it 3-5 s at the end of
    each one-day build at 1M customers, after dim_customers. Kept by customer here, the mart
    counts one narrow table instead.

    Incremental by customer (macros/change_log.sql): a build recomputes the customers that
    dim_customers_stored and the stored repurchase mart replaced, and those whose churn gaps
    were recomputed, since
    this table's own last build (each logs the customers it replaces; their rows change
    with nothing else, the moving as-of date included, as their own models say), the
    referrers whose referrals fct_referrals replaced or wrote (it logs their old and new
    referrer keys), and the referrers of referrals dated in the days the as-of date moved
    over (a referral counts from its date on, which no log records). A customer that left
    dim_customers (merged into another key) is logged by dim_customers_stored and loses its
    row here. The as-of date moving back rebuilds it in full.

    Until stop 70 the referrer status was found by comparing every referrer with every
    stored one: a scan of this whole table on each build, on the last stretch of the
    longest chain of models (docs/operations/marts.md, "Stop 70").
-#}

{#- the models whose change log it reads -#}
{#- The churn flag comes from the churn gaps, not from fct_customer_churn_stored (the same
    column, taken from the gap of the last purchase day): this model then starts when the
    gaps end, beside the churn mart, instead of after it, on the longest chain of a build
    (docs/operations/marts.md, "Stop 76"; from stop 50 to stop 75 it read the churn
    assessment, which came before the churn mart for the same reason). -#}
{%- set producers = ['dim_customers_stored', 'fct_customer_repurchase_stored', 'int_purchase_gaps_assessed_for_churn', 'fct_referrals'] %}

{{
    config(
        materialized='incremental',
        incremental_strategy='replace_changed_keys',
        unique_key='customer_key',
        change_log_key='customer_key',
        change_log_skip_unchanged=true,
        change_log_producers=producers,
        on_schema_change='fail',
        post_hook=[
            "{{ record_change_position() }}",
            "{{ set_not_null(['customer_key', 'loyalty_category', 'is_buyer', 'is_referrer', 'is_churned']) }}",
            "{{ enforce_accepted_values('loyalty_category', ['promoter', 'passive', 'detractor', 'unknown']) }}",
            "{{ analyze_when_stale() }}",
        ],
        indexes=[{'columns': ['customer_key'], 'unique': True}],
    )
}}

{%- set changes = change_log_state(producers) %}

with

-- Customers with a referral on or before the as-of date (the advocacy mart's rule).
referrers as (

    select distinct referrer_customer_key as customer_key
    from {{ ref('fct_referrals') }}
    where referrer_customer_key is not null
        and referred_date <= {{ as_of_date() }}

),

{% if not changes.full -%}
customers_in_scope as materialized (

    {{ changed_keys_since_last_build(changes) | indent(4) }}

    union

    -- referrals the moved as-of date lets in
    select referrer_customer_key
    from {{ ref('fct_referrals') }}
    where referrer_customer_key is not null
        and referred_date > cast('{{ changes.previous_as_of }}' as date)
        and referred_date <= {{ as_of_date() }}

),

{% endif -%}

customers as (

    select customer_key, loyalty_category
    from {{ ref('dim_customers_stored') }}
    {{ where_in_scope(changes) }}

),

-- Not filtered by the scope: joined to the customers in scope, each is looked up by its
-- unique index (or the whole table hashed in a build in full). Two filtered sets joined
-- leave the plan to its guess of how many keys the change log holds.
repurchase as (

    select * from {{ ref('fct_customer_repurchase_stored') }}

),

-- a customer's churn is that of the gap after their last purchase day (as in
-- fct_customer_churn_stored); the gaps' unique index starts with the customer key
churn as (

    select customer_key, is_churned
    from {{ ref('int_purchase_gaps_assessed_for_churn') }}
    where is_last_purchase_day

),

final as (

    select
        customers.customer_key,
        coalesce(customers.loyalty_category, 'unknown') as loyalty_category,
        repurchase.customer_key is not null as is_buyer,
        repurchase.frequency,
        repurchase.product_lines_bought,
        coalesce(repurchase.revenue, 0) as revenue,
        coalesce(repurchase.gross_margin, 0) as gross_margin,
        referrers.customer_key is not null as is_referrer,
        coalesce(churn.is_churned, false) as is_churned

    from customers
    left join repurchase
        on customers.customer_key = repurchase.customer_key
    left join churn
        on customers.customer_key = churn.customer_key
    left join referrers
        on customers.customer_key = referrers.customer_key

)

select * from final
