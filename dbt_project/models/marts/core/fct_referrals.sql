{#-
    One row per referral record, converted when the referred customer placed a first order
    (not cancelled) in fct_orders.

    Incremental (delete+insert on referral_id). A row depends on its referral record and on
    its referred customer's first order, so a build re-derives:

    * the referrals loaded after the watermark (source_loaded_at, the newest `_loaded_at`
      this table holds);
    * the referrals whose referred customer had an order replaced in fct_orders since this
      table's own last build: fct_orders logs the customer key of every order it replaces
      or writes, the old and the new one of a re-keyed order (macros/change_log.sql), and
      only those customers' first orders can have changed. Its position in the log is kept
      per physical table, so a generation a build behind catches up on both builds' orders.

    Rebuilt every time until stop 47, this read every first order of fct_orders (1.1-1.6 s
    at 1M customers) on the chain that dim_customers waits for. Its strategy logs the
    referrer key of every referral it replaces or writes, for fct_referrers.
-#}

{#- the models whose change log it reads -#}
{%- set producers = ['fct_orders'] %}

{{
    config(
        materialized='incremental',
        unique_key='referral_id',
        incremental_strategy='delete_insert_logging_keys',
        change_log_key='referrer_customer_key',
        change_log_producers=producers,
        change_log_as_of=false,
        on_schema_change='fail',
        pre_hook="{{ log_rebuilt_in_full() }}",
        post_hook=[
            "{{ record_change_position() }}",
            "{{ analyze_when_stale() }}",
        ],
        indexes=[
            {'columns': ['referral_id'], 'unique': True},
            {'columns': ['referrer_customer_key']},
            {'columns': ['referred_customer_key']},
            {'columns': ['source_loaded_at']},
        ],
    )
}}

{%- set changes = change_log_state(producers) %}

with

referrals as not materialized (

    select * from {{ ref('stg_crm__referrals') }}

),

orders as not materialized (

    select * from {{ ref('fct_orders') }}

),

{% if not changes.full -%}
{%- set watermark = incremental_watermark() %}

referrals_in_scope as materialized (

    select referral_id
    from referrals
    where loaded_at > {{ watermark }}

    union

    -- An array, not `in (...)`: planned as a short list of keys looked up in the index,
    -- where the planner cannot count what a select of the change log returns.
    select referral_id
    from {{ this }}
    where referred_customer_key = any(array(
        {{ changed_keys_since_last_build(changes) | indent(8) }}
    ))

),

{% endif -%}

scoped_referrals as (

    select referrals.*
    from referrals
    {%- if not changes.full %}
    where referrals.referral_id in (select referral_id from referrals_in_scope)
    {%- endif %}

),

{% if changes.full -%}
first_orders as (

    select
        customer_key,
        order_id,
        ordered_at

    from orders
    where is_first_order

),

{% endif -%}
final as (

    select
        scoped_referrals.referral_id,
        scoped_referrals.referrer_customer_id,
        scoped_referrals.referred_customer_id,
        first_orders.order_id as referred_first_order_id,
        cast(scoped_referrals.referrer_customer_id as text) as referrer_customer_key,
        cast(scoped_referrals.referred_customer_id as text) as referred_customer_key,
        scoped_referrals.referral_code,
        -- converted when the referred customer placed a first (non-cancelled) order
        first_orders.order_id is not null as is_converted,
        scoped_referrals.referred_date,
        cast(first_orders.ordered_at at time zone 'UTC' as date) as converted_date,
        scoped_referrals.referred_at,
        first_orders.ordered_at as converted_at,
        scoped_referrals.loaded_at as source_loaded_at

    from scoped_referrals
    {%- if changes.full %}
    left join first_orders
        on cast(scoped_referrals.referred_customer_id as text) = first_orders.customer_key
    {%- else %}
    -- The referred customer's first order, one index lookup per referral in scope. Filtered
    -- by an array of the customers in scope and joined, as until stop 49, the lookups could
    -- be planned with the array in each one's index condition: every lookup then sorted the
    -- whole array again, a cost that grew with the square of the scope (6.5 s for 4,036
    -- referrals after a three-day delta at 1M customers; docs/operations/marts.md, "Stop
    -- 49"). `offset 0` keeps the lateral select from being pulled up into a join whose
    -- plan would again rest on the planner's guess of how many referrals are in scope.
    left join lateral (
        select order_id, ordered_at
        from orders
        where orders.customer_key = cast(scoped_referrals.referred_customer_id as text)
            and orders.is_first_order
        offset 0
    ) as first_orders on true
    {%- endif %}

)

select * from final
