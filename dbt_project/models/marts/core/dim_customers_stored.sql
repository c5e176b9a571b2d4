{#-
    The stored part of dim_customers (a view adding each customer's lifecycle stage from
    fct_customer_churn_stored): one row per customer. Why apart: the lifecycle stage moves
    with the as-of date and with every churn assessment, at the end of the longest chain of
    models a build waits for (purchase days, churn gaps, churn assessment). Everything else
    here comes from identity resolution and the facts, so this table is built beside that
    chain instead of after it, and a customer whose stage alone changed is not recomputed
    (docs/operations/marts.md, "Stop 50").

    Incremental by customer (macros/change_log.sql): a build recomputes the customers whose
    inputs changed since this table's own last build and keeps every other row. The change
    log says which: CRM records loaded again (int_identity_observations: their customer
    keys, not the emails and accounts it also logs, which are never a key), identifiers
    that moved between customer keys (identity resolution), orders and survey responses
    replaced (fct_orders, fct_survey_responses: old and new keys), and referrals replaced
    or written (fct_referrals: their old and new referrer keys). The referral count here is
    not cut at the as-of date, so nothing else moves it.

    Until stop 74 the referral counts were compared with every stored one instead: a scan of
    this whole table on every build (874 ms of the select after three days' delta at 1M
    customers; docs/operations/marts.md, "Stop 74").

    Under write-audit-publish the table a build starts from is the previous generation,
    brought up to the published one right after the swap (it then takes over the published
    table's position in the log); when that was skipped it is the generation before the
    last one, and its own position (the log is read per physical table) makes it catch up
    on both builds' changes. For that catch-up it logs the customers it replaced
    (change_log_replaced_key; a null key when it was built in full).
-#}

{#- Customers recomputed and found as stored in both generations are left alone
    (change_log_skip_unchanged): after a one-day delta at 1M customers that was 12k of the
    33k in scope (stop 29, when this table still read the churn assessment). -#}

{#- The scope is the change log's keys alone, which the planner guesses at a few dozen
    when they are tens of thousands (the log has no column statistics on a server without
    autovacuum). Its later joins are of CTEs over the customers in scope, which such a guess
    could put in nested loops (stop 47 measured 13 s, comparing 21k customers with each of
    12.6k last answers), so nested loops are off and every lookup by customer is an array
    the index takes in key order, as in the churn gaps (docs/operations/marts.md, "Stop 74").
    In a build in full it took no larger a share of the build with nested loops off. -#}

{#- work_mem 256MB (set in the pre-hooks): with the default 4MB its sorts and hash
    aggregates of the customers in scope and their orders (244k orders after three days'
    delta at 1M customers) spilled 126 MB to temporary files. In two pairs of one-day
    builds on the bench warehouse, alternating 256MB for the whole database with the
    default, it took 2.60-2.83 s against 3.54-3.88 s (docs/operations/marts.md, "Stop 77"). -#}

{#- the models whose change log it reads -#}
{%- set producers = ['int_identity_observations', 'int_customers_resolved_across_sources', 'fct_orders', 'fct_survey_responses', 'fct_referrals'] %}

{{
    config(
        materialized='incremental',
        incremental_strategy='replace_changed_keys',
        unique_key='customer_key',
        change_log_key='customer_key',
        change_log_replaced_key='customer_key',
        change_log_producers=producers,
        change_log_skip_unchanged=true,
        change_log_as_of=false,
        change_log_key_patterns={'int_identity_observations': crm_customer_key_pattern()},
        on_schema_change='fail',
        pre_hook=["{{ log_rebuilt_in_full() }}", "set local enable_nestloop = off", "set local work_mem = '256MB'"],
        post_hook=[
            "{{ record_change_position() }}",
            "{{ set_not_null(['is_inferred']) }}",
            "{{ enforce_accepted_values('loyalty_category', ['promoter', 'passive', 'detractor']) }}",
            "{{ enforce_between([{'column': 'order_count', 'min_value': 0}, {'column': 'revenue', 'min_value': 0}, {'column': 'last_likelihood_to_recommend', 'min_value': 0, 'max_value': 10}]) }}",
            "{{ analyze_when_stale() }}",
            "{{ keep_row_count() }}",
        ],
        indexes=[
            {'columns': ['customer_key'], 'unique': True},
        ],
    )
}}

{%- set changes = change_log_state(producers) %}

with

{% if not changes.full -%}
customers_in_scope as materialized (

    {{ changed_keys_since_last_build(changes) | indent(4) }}

),

{% endif -%}

crm_customers as (

    select * from {{ ref('stg_crm__customers') }}
    {%- if not changes.full %}
    -- CRM keys are customer ids: looked up by the raw table's primary key
    where customer_id = any(array(
        {{ crm_customer_ids_in('customers_in_scope') }}
    ))
    {%- endif %}

),

identities as (

    select * from {{ ref('int_customers_resolved_across_sources') }}
    {{ where_in_scope_by_array(changes) }}

),

orders as (

    select * from {{ ref('fct_orders') }}
    {{ where_in_scope_by_array(changes) }}

),

survey_responses as (

    select * from {{ ref('fct_survey_responses') }}
    {{ where_in_scope_by_array(changes) }}

),

referrals as (

    select * from {{ ref('fct_referrals') }}
    {{ where_in_scope_by_array(changes, 'referrer_customer_key') }}

),

-- One row per customer: every CRM customer, plus every inferred key.
customer_keys as (

    select
        cast(customer_id as text) as customer_key,
        customer_id,
        false as is_inferred

    from crm_customers

    union all

    select distinct
        customer_key,
        cast(null as bigint) as customer_id,
        true as is_inferred

    from identities
    where is_inferred

),

identities_summed as (

    select
        customer_key,
        min(first_seen_at) as first_seen_at,
        -- an inferred customer's email; the lowest when several resolve to one key
        min(customer_email) filter (where identifier_type = 'email') as inferred_email

    from identities
    group by 1

),

-- Purchases only: cancelled orders were never purchases. revenue is before refunds.
orders_summed as (

    select
        customer_key,
        count(*) as order_count,
        sum(revenue) as revenue,
        sum(refunded_amount) as refunded_amount,
        sum(net_revenue) as net_revenue,
        sum(gross_margin) as gross_margin,
        sum(net_margin) as net_margin,
        min(ordered_date) as first_order_date,
        max(ordered_date) as last_order_date

    from orders
    where not is_cancelled
    group by 1

),

latest_accounts as (

    select distinct on (customer_key)
        customer_key,
        sales_account_id

    from orders
    where sales_account_id is not null
    order by customer_key asc, ordered_at desc, order_id desc

),

-- Referrals the customer made (as referrer), converted or not.
referrals_summed as (

    select
        referrer_customer_key as customer_key,
        count(*) as referrals_made

    from referrals
    where referrer_customer_key is not null
    group by 1

),

-- The loyalty category is that of the customer's LAST likelihood-to-recommend answer.
last_ltr_answers as (

    select
        customer_key,
        nps_category,
        likelihood_to_recommend,
        responded_date,
        responded_at,
        row_number() over (
            partition by customer_key
            order by responded_at desc, response_id desc
        ) as answer_rank_from_last

    from survey_responses
    where customer_key is not null
        and nps_category is not null

),

final as (

    select
        customer_keys.customer_key,
        customer_keys.customer_id,
        latest_accounts.sales_account_id,
        coalesce(crm_customers.customer_email, identities_summed.inferred_email) as customer_email,
        crm_customers.segment,
        crm_customers.region,
        crm_customers.acquisition_channel,
        last_ltr_answers.nps_category as loyalty_category,
        coalesce(orders_summed.order_count, 0) as order_count,
        last_ltr_answers.likelihood_to_recommend as last_likelihood_to_recommend,
        coalesce(orders_summed.revenue, 0) as revenue,
        coalesce(orders_summed.refunded_amount, 0) as refunded_amount,
        coalesce(orders_summed.net_revenue, 0) as net_revenue,
        coalesce(orders_summed.gross_margin, 0) as gross_margin,
        coalesce(orders_summed.net_margin, 0) as net_margin,
        coalesce(referrals_summed.referrals_made, 0) as referrals_made,
        customer_keys.is_inferred,
        coalesce(crm_customers.is_archived, false) as is_archived,
        crm_customers.has_email_consent,
        coalesce(crm_customers.is_cancelled, false) as is_cancelled,
        referrals_summed.customer_key is not null as is_referrer,
        crm_customers.acquisition_date,
        orders_summed.first_order_date,
        orders_summed.last_order_date,
        last_ltr_answers.responded_date as last_ltr_responded_date,
        least(crm_customers.created_at, identities_summed.first_seen_at) as first_seen_at,
        crm_customers.cancelled_at,
        last_ltr_answers.responded_at as last_ltr_responded_at

    from customer_keys
    left join crm_customers
        on customer_keys.customer_id = crm_customers.customer_id
    left join identities_summed
        on customer_keys.customer_key = identities_summed.customer_key
    left join orders_summed
        on customer_keys.customer_key = orders_summed.customer_key
    left join latest_accounts
        on customer_keys.customer_key = latest_accounts.customer_key
    left join last_ltr_answers
        on customer_keys.customer_key = last_ltr_answers.customer_key
        and last_ltr_answers.answer_rank_from_last = 1
    left join referrals_summed
        on customer_keys.customer_key = referrals_summed.customer_key

)

select * from final
