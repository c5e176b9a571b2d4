{#-
    Incremental: a build re-derives only the orders whose row can differ from a full refresh,
    then replaces them by order_id (delete+insert). Every input and how a change reaches here:

    * orders, order_lines, refunds loaded after the watermark -> those orders (the watermark,
      source_loaded_at, is the newest _loaded_at of an order, its lines and refunds);
    * a product loaded after it (unit_cost -> gross_margin) -> the orders with a line of it;
      these "changed" orders are found, and their lines and refunds summed, by
      int_orders_changed_since_last_build, which needs no customer key and so runs beside
      identity resolution instead of after it;
    * identity (customer_key): an email's key changes only when a CRM customer with that email
      is loaded (new, late-arriving, archived, email changed), so CRM customers loaded after the
      watermark touch: the orders with their current email, the orders keyed to them before
      (an email that moved away), and the email-less orders of sales accounts whose latest
      email is touched or whose orders changed (before or after the change); of those, the
      orders whose key did move (in either generation);
    * customer_order_number / is_first_order: the orders of every customer key, old or new,
      of a re-derived order that come at or after its place, old or new (a late earlier
      order, a cancellation, a re-keyed order renumber the customer's later orders). Those
      other orders changed in nothing but their number: they are taken as stored and only
      numbered again, continuing from the last stored number before that place, so lines,
      refunds and identities are summed for the candidates alone. A re-keyed order nothing of
      which was loaded likewise keeps its stored row but for its key.

    Its strategy, delete_insert_logging_keys, is delete+insert that also logs the customer
    key of every row it replaces and writes, so the per-customer intermediates recompute
    only those customers (macros/change_log.sql). An order loaded again with a new status
    that changes nothing else (shipped, delivered: not cancelled or refunded, which are
    columns of their own) takes its status, update time and load time in place, unlogged
    (change_log_refresh_only): no model reading the log uses those three columns
    (tests/unit/test_dbt_project_conventions.py checks), so its customer is not recomputed.
-#}

{{
    config(
        materialized='incremental',
        unique_key='order_id',
        incremental_strategy='delete_insert_logging_keys',
        change_log_key='customer_key',
        change_log_refresh_only={'columns': ['order_status', 'updated_at', 'source_loaded_at']},
        on_schema_change='fail',
        pre_hook=["set local work_mem = '256MB'", "{{ log_rebuilt_in_full() }}"],
        post_hook=[
            "{{ set_not_null(['revenue', 'customer_key']) }}",
            "{{ enforce_between([{'column': 'revenue', 'min_value': 0}, {'column': 'refunded_amount', 'min_value': 0}, {'column': 'line_count', 'min_value': 0}]) }}",
            "{{ analyze_when_stale() }}",
            "{{ keep_row_count() }}",
        ],
        indexes=[
            {'columns': ['order_id'], 'unique': True},
            {'columns': ['customer_key']},
            {'columns': ['customer_email']},
            {'columns': ['source_loaded_at']},
            {'columns': ['ordered_date']},
        ],
    )
}}

-- depends_on: {{ ref('stg_crm__customers') }}
-- depends_on: {{ ref('int_orders_changed_since_last_build') }}

with

-- Import CTEs are `not materialized`: incremental builds read them several times, and a
-- materialized CTE would copy a whole table and lose its indexes.
orders as not materialized (

    select * from {{ ref('stg_sales__orders') }}

),

order_lines as not materialized (

    select * from {{ ref('stg_sales__order_lines') }}

),

products as not materialized (

    select * from {{ ref('stg_sales__products') }}

),

refunds as not materialized (

    select * from {{ ref('stg_sales__refunds') }}

),

identities as not materialized (

    select * from {{ ref('int_customers_resolved_across_sources') }}

),

{% if is_incremental() %}
{%- set watermark = incremental_watermark() %}
{%- do assert_changed_orders_handoff(ref('int_orders_changed_since_last_build'), watermark) %}

-- The stored orders in scope are looked up by arrays of keys (`= any(array(...))`), read by
-- index whatever the planner guesses they hold (fct_order_lines does the same). As joins, the
-- CRM customers counted right after raw was analyzed (13k after three days), times a sampled
-- 29 orders per email (there are 3), made it hash a scan of every stored order to place the
-- candidates: its select took 6.3-7.9 s, against 2.4 s (docs/operations/marts.md, "Stop 53").

crm_customers as not materialized (

    select * from {{ ref('stg_crm__customers') }}

),

touched_crm_customers as (

    select
        cast(customer_id as text) as customer_key,
        customer_email

    from crm_customers
    where loaded_at > {{ watermark }}

),

-- The orders whose row, a line, a refund or a product of a line was loaded since the
-- watermark, found and summed beside identity resolution (the same watermark, read from
-- this table before this model ran).
changed as not materialized (

    select * from {{ ref('int_orders_changed_since_last_build') }}

),

changed_orders as (

    select order_id from changed

),

-- Sales accounts whose key may have moved: their latest email changed (an order of theirs
-- changed, counting the account it had before) or that email's key changed.
touched_accounts as (

    select sales_account_id from changed

    union

    select previous.sales_account_id
    from {{ this }} as previous
    where previous.order_id = any(array(select order_id from changed_orders))

    union

    select identities.identifier
    from identities
    where identities.customer_email = any(array(select customer_email from touched_crm_customers))
        and identities.identifier_type = 'sales_account'

),

{#- The published generation, read only while this table may be a build behind it
    (macros/change_log.sql, published_generation_ahead). -#}
{%- set published_ahead = published_generation_ahead(this) %}
-- Stored orders whose key may have moved: keyed by a touched email or customer, or
-- email-less orders of a touched account; while this table is a build behind, also those
-- keyed to a touched customer in the published generation (a move this table never saw).
rekey_suspects as (

    select previous.order_id, previous.customer_key, previous.customer_email, previous.sales_account_id
    from {{ this }} as previous
    where previous.customer_email = any(array(select customer_email from touched_crm_customers))

    union

    select previous.order_id, previous.customer_key, previous.customer_email, previous.sales_account_id
    from {{ this }} as previous
    where previous.customer_key = any(array(select customer_key from touched_crm_customers))

    union

    select previous.order_id, previous.customer_key, previous.customer_email, previous.sales_account_id
    from {{ this }} as previous
    inner join touched_accounts
        on previous.sales_account_id = touched_accounts.sales_account_id
    where previous.customer_email is null
    {%- if published_ahead is not none %}

    union

    select previous.order_id, previous.customer_key, previous.customer_email, previous.sales_account_id
    from {{ this }} as previous
    where previous.order_id = any(array(
        select published_order.order_id
        from {{ published_ahead }} as published_order
        where published_order.customer_key = any(array(select customer_key from touched_crm_customers))
    ))
    {%- endif %}

),

-- Of those, the orders whose key did move: the key `resolved` would give them (by email,
-- else by sales account) is not the one stored, here or, while this table is a build
-- behind (a failed catch-up), in the published generation, which the catch-up after the
-- swap brings in line only with the rows this build writes. Any other suspect would come
-- out as stored, and its number changes only with a candidate of its key, which numbers
-- it again below. Most CRM records loaded are customers updated in place (a segment, a
-- cancellation), whose orders keep their key: after three days' delta at 1M customers all
-- 36k suspects were re-derived, numbered again and compared with both generations to find
-- the few that moved (docs/operations/marts.md, "Stop 62").
rekeyed_orders as (

    select suspects.order_id
    from (
        select
            rekey_suspects.*,
            {{ customer_key_looked_up('rekey_suspects.customer_email', 'rekey_suspects.sales_account_id') | indent(12) }} as current_key
        from rekey_suspects
        -- kept whole, so each suspect's key is looked up once for both tests
        offset 0
    ) as suspects
    where suspects.customer_key is distinct from suspects.current_key
    {%- if published_ahead is not none %}
        or not exists (
            select from {{ published_ahead }} as published_order
            where published_order.order_id = suspects.order_id
                and published_order.customer_key is not distinct from suspects.current_key
        )
    {%- endif %}

),

candidate_orders as (

    select order_id from changed_orders
    union
    select order_id from rekeyed_orders

),

-- The candidates before their key is looked up. A re-keyed order nothing of which was
-- loaded (else it would be a changed one) keeps its stored row but for the key.
unresolved as (

    select {{ orders_with_sums_columns() | join(', ') }} from changed

    union all

    select
        {%- for column in orders_with_sums_columns() %}
        previous.{{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ this }} as previous
    where previous.order_id = any(array(select order_id from rekeyed_orders))
        and not exists (
            select from changed_orders
            where changed_orders.order_id = previous.order_id
        )

),

{% else %}

lines_summed as (

    {{ order_lines_summed('order_lines', 'products') | indent(4) }}

),

refunds_summed as (

    {{ refunds_summed('refunds') | indent(4) }}

),

unresolved as (

    {{ orders_with_sums('orders', 'lines_summed', 'refunds_summed') | indent(4) }}

),

{% endif %}

resolved as (

    select
        unresolved.*,
        {%- if is_incremental() %}
        {{ customer_key_looked_up('unresolved.customer_email', 'unresolved.sales_account_id') | indent(8) }} as customer_key
        {%- else %}
        coalesce(by_email.customer_key, by_account.customer_key) as customer_key
        {%- endif %}

    from unresolved
    {#- Each order's two identifiers, by the unique index on (identifier_type, identifier):
        incrementally one lookup per candidate (customer_key_looked_up), in full a hash join
        of each, as every order needs a key. -#}
    {%- if not is_incremental() %}
    {%- for alias, identifier_type, identifier in [
        ('by_email', 'email', 'unresolved.customer_email'),
        ('by_account', 'sales_account', 'unresolved.sales_account_id'),
    ] %}
    left join identities as {{ alias }}
        on {{ alias }}.identifier_type = '{{ identifier_type }}'
        and {{ identifier }} = {{ alias }}.identifier
    {%- endfor %}
    {%- endif %}

),

derived as (

    select
        order_id,
        customer_key,
        sales_account_id,
        customer_email,
        order_status,
        currency,
        line_count,
        item_quantity,
        order_total,
        revenue,
        refunded_amount,
        revenue - refunded_amount as net_revenue,
        gross_margin,
        gross_margin - refunded_amount as net_margin,
        is_cancelled,
        is_refunded,
        has_refund,
        ordered_date,
        ordered_at,
        last_refunded_at,
        updated_at,
        source_loaded_at

    from resolved

),

{#- Every column but the numbering, named once: the stored rows below line up with these. #}
{%- set unnumbered_columns = ['order_id', 'customer_key', 'sales_account_id', 'customer_email', 'order_status', 'currency', 'line_count', 'item_quantity', 'order_total', 'revenue', 'refunded_amount', 'net_revenue', 'gross_margin', 'net_margin', 'is_cancelled', 'is_refunded', 'has_refund', 'ordered_date', 'ordered_at', 'last_refunded_at', 'updated_at', 'source_loaded_at'] %}

{% if is_incremental() -%}
{#- An order's number counts the customer's purchases before it (by ordered_at, then
    order_id), so a re-derived order can move only the numbers of its keys' orders that come
    at or after its place, old or new. A one-day delta mostly appends orders at the end:
    at 1M customers, numbering every order of those customers again emitted 111.6k stored
    rows, 110.1k of them unchanged, for the strategy to compare with both generations and
    drop (docs/operations/marts.md, "Stop 32"). -#}
-- Where the numbering of each key can change: the earliest place of a re-derived order
-- with that key, before (its stored row) or after (from `resolved`, looked up once).
renumbering_starts as (

    select distinct on (customer_key)
        customer_key,
        ordered_at as start_ordered_at,
        order_id as start_order_id

    from (
        select previous.customer_key, previous.ordered_at, previous.order_id
        from {{ this }} as previous
        where previous.order_id = any(array(select order_id from candidate_orders))

        union all

        select customer_key, ordered_at, order_id from resolved
    ) as placed
    order by customer_key, ordered_at, order_id

),

-- The stored orders of those keys, read once through the customer_key index: the ones
-- before the start keep their row and number, the others are numbered again. None of them
-- is a candidate before its key's start (the start is the earliest candidate place).
stored_orders_of_renumbered_keys as materialized (

    select
        previous.order_id,
        previous.customer_key,
        previous.customer_order_number,
        (previous.ordered_at, previous.order_id)
            >= (renumbering_starts.start_ordered_at, renumbering_starts.start_order_id)
            as is_from_start

    from {{ this }} as previous
    inner join renumbering_starts
        on previous.customer_key = renumbering_starts.customer_key

),

-- Purchases of each key before its start: the number its first renumbered purchase
-- continues from (the last number before the start, numbered from 1 without gaps; none
-- for a key with no purchase before it).
purchases_before_start as (

    select
        customer_key,
        max(customer_order_number) as purchases

    from stored_orders_of_renumbered_keys
    where not is_from_start
    group by 1

),

{% endif -%}

unnumbered as (

    select {{ unnumbered_columns | join(', ') }} from derived

    {% if is_incremental() -%}
    union all

    -- The other orders of those keys from their start, only to be numbered again: nothing
    -- of theirs was loaded and their key did not move (else they would be candidates), so
    -- their stored row holds.
    select
        {%- for column in unnumbered_columns %}
        previous.{{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    from stored_orders_of_renumbered_keys as stored
    inner join {{ this }} as previous
        on previous.order_id = stored.order_id
    where stored.is_from_start
        and not exists (
            select from candidate_orders
            where candidate_orders.order_id = stored.order_id
        )
    {%- endif %}

),

final as (

    select
        unnumbered.*,
        -- nth purchase of the customer; cancelled orders were never purchases and get no number
        case
            when not unnumbered.is_cancelled then
                {% if is_incremental() -%}
                coalesce(purchases_before_start.purchases, 0) +
                {% endif -%}
                row_number() over (
                    partition by unnumbered.customer_key, unnumbered.is_cancelled
                    order by unnumbered.ordered_at asc, unnumbered.order_id asc
                )
        end as customer_order_number

    from unnumbered
    {% if is_incremental() -%}
    left join purchases_before_start
        on unnumbered.customer_key = purchases_before_start.customer_key
    {%- endif %}

)

select
    *,
    coalesce(customer_order_number = 1, false) as is_first_order

from final
