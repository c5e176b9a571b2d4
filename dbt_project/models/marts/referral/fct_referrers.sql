{#-
    One row per customer who referred at least once (referrer_customer_key): referrals made,
    how many converted (the referred customer placed a first order, fct_referrals), and the
    revenue of the customers they brought in (dim_customers.revenue: purchases not cancelled,
    before refunds; each referred customer counted once per referrer). A referral record
    without a referrer is nobody's referral and is left out.

    Incremental by referrer (macros/change_log.sql). A referrer's row depends on their
    referrals, their own dim_customers row (segment, loyalty category) and the dim_customers
    rows of the customers they referred (revenue), so a build recomputes the referrers that
    fct_referrals logged (it logs the referrer of every referral it replaces or writes, the
    old and the new one), those dim_customers_stored logged, and the referrers of the referred
    customers dim_customers_stored logged. The row of a key logged that has no referral left is
    removed; a recomputed row equal to the stored one in both generations stays as it is
    (change_log_skip_unchanged: most referrers dim_customers_stored logs changed in nothing this
    mart carries). It logs the referrers it replaced (change_log_replaced_key), so the
    retired generation is caught up after the swap, as dim_customers_stored is. Rebuilt every time
    until stop 47, this read every referral and looked up about 100k customers twice
    (1.4-2 s at 1M customers). No column depends on the as-of date.
-#}

{#- the models whose change log it reads -#}
{%- set producers = ['fct_referrals', 'dim_customers_stored'] %}

{{
    config(
        materialized='incremental',
        incremental_strategy='replace_changed_keys',
        unique_key='referrer_customer_key',
        change_log_key='referrer_customer_key',
        change_log_replaced_key='referrer_customer_key',
        change_log_skip_unchanged=true,
        change_log_producers=producers,
        change_log_as_of=false,
        on_schema_change='fail',
        post_hook=[
            "{{ record_change_position() }}",
            "{{ analyze_when_stale() }}",
        ],
        indexes=[{'columns': ['referrer_customer_key'], 'unique': True}],
    )
}}

{%- set changes = change_log_state(producers) %}

with

{% if not changes.full -%}
keys_logged as materialized (

    {{ changed_keys_since_last_build(changes) | indent(4) }}

),

-- An array, not `in (...)`: planned as a short list of keys looked up in the index, where
-- the planner cannot count what a select of the change log returns.
referrers_in_scope as materialized (

    select key_value as referrer_customer_key
    from keys_logged

    union

    select referrer_customer_key
    from {{ ref('fct_referrals') }}
    where referred_customer_key = any(array(select key_value from keys_logged))
        and referrer_customer_key is not null

),

{% endif -%}

referrals as (

    select * from {{ ref('fct_referrals') }}
    where referrer_customer_key is not null
        {%- if not changes.full %}
        and referrer_customer_key = any(array(select referrer_customer_key from referrers_in_scope))
        {%- endif %}

),

-- Joined twice, each time to the ~100k customers named by referrals: not materialized, so
-- each join looks them up by dim_customers' key instead of copying and sorting all of it
-- (2.9 s against 2.0 s at 1M customers).
customers as not materialized (

    select * from {{ ref('dim_customers_stored') }}

),

referrals_summed as (

    select
        referrer_customer_key,
        count(*) as referrals_made,
        count(*) filter (where is_converted) as converted_referrals,
        count(distinct referred_customer_key) as referred_customers,
        min(referred_date) as first_referred_date,
        max(referred_date) as last_referred_date

    from referrals
    group by 1

),

-- Each referred customer once per referrer, so a duplicated referral record does not double
-- their revenue.
referred_pairs as (

    select distinct
        referrer_customer_key,
        referred_customer_key

    from referrals
    where referred_customer_key is not null

),

referred_revenue as (

    select
        referred_pairs.referrer_customer_key,
        sum(coalesce(referred_customers.revenue, 0)) as referred_customers_revenue,
        sum(coalesce(referred_customers.net_revenue, 0)) as referred_customers_net_revenue

    from referred_pairs
    left join customers as referred_customers
        on referred_pairs.referred_customer_key = referred_customers.customer_key
    group by 1

),

final as (

    select
        referrals_summed.referrer_customer_key,
        referrers.customer_id as referrer_customer_id,
        coalesce(referrers.segment, 'unknown') as segment,
        coalesce(referrers.loyalty_category, 'unknown') as loyalty_category,
        referrals_summed.referrals_made,
        referrals_summed.converted_referrals,
        referrals_summed.referred_customers,
        coalesce(referred_revenue.referred_customers_revenue, 0) as referred_customers_revenue,
        coalesce(referred_revenue.referred_customers_net_revenue, 0) as referred_customers_net_revenue,
        round(referrals_summed.converted_referrals::numeric / referrals_summed.referrals_made, 4) as conversion_rate,
        referrers.customer_key is not null as is_in_dim_customers,
        referrals_summed.first_referred_date,
        referrals_summed.last_referred_date

    from referrals_summed
    left join customers as referrers
        on referrals_summed.referrer_customer_key = referrers.customer_key
    left join referred_revenue
        on referrals_summed.referrer_customer_key = referred_revenue.referrer_customer_key

)

select * from final
