{#-
    The stored part of fct_customer_churn (a view adding the days since the last purchase,
    the lifecycle stage and the as-of date to it): one row per customer with a purchase on
    or before the as-of date, with the customer's segment and every churn column of
    int_customers_churn_assessed (which finds the churns the moving as-of date brings). The
    days since the last purchase and the lifecycle stage move with the as-of date alone, so
    storing them meant rewriting, on every build, every customer (the days) or the
    customers whose stage the date moved (the stage, until stop 70); without them, a build
    rewrites the customers whose churn assessment or CRM record changed.

    The segment is the CRM record's, as in dim_customers (a CRM customer's key is its
    customer_id as text; a customer known only from sales or surveys has none: 'unknown'). It is
    read from the CRM staging view, not from dim_customers, so this mart is built beside
    dim_customers instead of after it, at the end of the chain of models a build waits for.

    Incremental by customer (macros/change_log.sql): a build recomputes the customers whose
    churn assessment was recomputed, and those whose CRM record was loaded again (identity
    observations log the CRM customer key, beside emails and accounts, which it skips),
    since this table's own last build. Under
    write-audit-publish it logs the customers it replaced (change_log_replaced_key), so the
    retired generation is caught up after the swap (cem_warehouse.transform.generations).
-#}

{#- the models whose change log it reads -#}
{%- set producers = ['int_customers_churn_assessed', 'int_identity_observations'] %}

{{
    config(
        materialized='incremental',
        incremental_strategy='replace_changed_keys',
        unique_key='customer_key',
        change_log_key='customer_key',
        change_log_replaced_key='customer_key',
        change_log_producers=producers,
        change_log_key_patterns={'int_identity_observations': crm_customer_key_pattern()},
        on_schema_change='fail',
        pre_hook="{{ log_rebuilt_in_full() }}",
        post_hook=[
            "{{ record_change_position() }}",
            "{{ set_not_null(['is_churned', 'first_purchase_date', 'last_purchase_date', 'threshold_days']) }}",
            "{{ enforce_accepted_values('churn_rule', ['no purchase within threshold', 'explicit cancellation']) }}",
            "{{ enforce_between([{'column': 'threshold_days', 'min_value': 90}, {'column': 'last_csat_before_churn', 'min_value': 1, 'max_value': 5}, {'column': 'last_ltr_before_churn', 'min_value': 0, 'max_value': 10}]) }}",
            "{{ keep_row_count() }}",
            "{{ analyze_when_stale() }}",
        ],
        indexes=[{'columns': ['customer_key'], 'unique': True}],
    )
}}

-- depends_on: {{ ref('int_as_of_date') }}
{%- set changes = change_log_state(producers) %}

with

{% if not changes.full -%}
customers_in_scope as materialized (

    {{ changed_keys_since_last_build(changes) | indent(4) }}

),

{% endif -%}

churn as (

    select * from {{ ref('int_customers_churn_assessed') }}
    {{ where_in_scope(changes) }}

),

{% if changes.full -%}
crm_customers as (

    select * from {{ ref('stg_crm__customers') }}

),

{% endif -%}
final as (

    select
        churn.customer_key,
        coalesce(crm_customers.segment, 'unknown') as segment,
        churn.churn_rule,
        churn.last_nps_category_before_churn,
        churn.threshold_days,
        churn.median_gap_days,
        churn.last_csat_before_churn,
        churn.last_ltr_before_churn,
        churn.win_back_count,
        churn.is_churned,
        churn.is_satisfied_before_churn,
        churn.is_won_back,
        churn.first_purchase_date,
        churn.last_purchase_date,
        churn.churned_date,
        churn.won_back_date

    from churn
    {% if changes.full -%}
    left join crm_customers
        -- A CRM customer's key is its id as text (int_customers_resolved_across_sources), so
        -- the CRM side is cast, not the key: casting the key needed a digits-only check on
        -- every row first (an inferred key is not a number), and that regular expression
        -- was most of this model's time (4.3 s against 1.5-1.9 s at 1M customers).
        on churn.customer_key = cast(crm_customers.customer_id as text)
    {%- else -%}
    -- The few customers in scope: each CRM record looked up by the raw table's primary key
    -- (an inferred key is not a number and finds none). A join of the two filtered sets
    -- left the plan to the planner's guess of how many keys the change log holds (108 for
    -- 22.9k on a 1M-customer warehouse); one bench build spent 22 s in this select, most
    -- likely comparing 20k churn rows with each of 19k CRM rows.
    left join lateral (
        select crm.segment
        from {{ ref('stg_crm__customers') }} as crm
        where crm.customer_id = {{ crm_customer_id('churn.customer_key') }}
    ) as crm_customers on true
    {%- endif %}

)

select * from final
