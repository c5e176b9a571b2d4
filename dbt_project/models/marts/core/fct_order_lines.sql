{#-
    Incremental (delete+insert on order_line_id). Inputs and how a change reaches here:

    * order_lines loaded after the watermark -> those lines;
    * a product loaded after it (tier, unit_cost) -> the lines of that product;
    * fct_orders (customer_key, is_cancelled, ordered_date, ordered_at), already brought up
      to date in this build -> the lines of the orders fct_orders wrote since this table's
      own last build that hold other values than their order now has. Every change of what
      a line takes from its order, a re-keyed order's too, is a row fct_orders writes, and
      its strategy logs the order_id of each (`fct_orders#rows`, the log the catch-up after
      the swap copies from). This table reads that log from its own position, kept per
      physical table like any reader's, so a generation a build behind reads both builds'
      orders. Until stop 62 the scope was worked out from identity instead (every order
      keyed, before or after, to a CRM customer loaded since the watermark, and the
      email-less orders of changed orders' keys): after three days' delta at 1M customers
      that read 128.8k stored lines to find 1,277 to re-derive.

    Its strategy, delete_insert_logging_keys, is delete+insert that also logs the customer
    key of every row it replaces and writes, so the per-customer intermediates recompute
    only those customers (macros/change_log.sql). Its source_loaded_at is the line's own
    load time, not its order's: an order loaded again with a new status (shipped, delivered)
    gets its lines re-derived, and they come out equal to their stored rows, so the strategy
    drops them. Stamped with the order's load time, about half the lines of a one-day delta
    at 1M customers differed in that column alone and were written twice, here and in the
    catch-up of the retired generation (docs/operations/marts.md, "Stop 39").
-#}

{#- Its customer_key index carries every column int_order_lines_aggregated_to_customers
    reads, so that model reads a customer's lines from the index alone (an index-only scan)
    instead of from about one table page per line: a customer's lines lie all over the
    1.4 GB table. After three days' delta at 1M customers its select took 1.53 s instead of
    6.99 s (about 433k lines of 33-34k customers). The index is 392 MB against the plain one's
    95 MB, takes 16.7 s to build against 10.2-10.7 s, and the build's writes of lines
    maintain it (docs/operations/marts.md, "Stop 64"). create_missing_indexes replaces the
    plain index on a table built before. An index-only scan skips the table only on
    pages VACUUM marked all-visible: `vacuum_after_catch_up` has the publication vacuum
    the retired table once it is caught up (cem_warehouse.transform.generations). -#}

{#- the change logs it reads: fct_orders' own (its null key says it was rebuilt in full) and
    the order_ids of the rows it wrote -#}
{%- set producers = ['fct_orders', 'fct_orders#rows'] %}

{{
    config(
        materialized='incremental',
        unique_key='order_line_id',
        incremental_strategy='delete_insert_logging_keys',
        change_log_key='customer_key',
        change_log_producers=producers,
        change_log_as_of=false,
        on_schema_change='fail',
        meta={'vacuum_after_catch_up': true},
        pre_hook=["set local work_mem = '256MB'", "{{ log_rebuilt_in_full() }}"],
        post_hook=[
            "{{ record_change_position() }}",
            "{{ set_not_null('product_line') }}",
            "{{ enforce_between([{'column': 'quantity', 'min_value': 1}, {'column': 'line_revenue', 'min_value': 0}]) }}",
            "{{ analyze_when_stale() }}",
            "{{ keep_row_count() }}",
        ],
        indexes=[
            {'columns': ['order_line_id'], 'unique': True},
            {'columns': ['order_id']},
            {'columns': ['customer_key', 'product_line', 'ordered_date', 'tier', 'is_cancelled']},
            {'columns': ['source_loaded_at']},
        ],
    )
}}

{%- set changes = change_log_state(producers) %}

with

-- Import CTEs are `not materialized`: incremental builds read them several times, and a
-- materialized CTE would copy a whole table and lose its indexes.
order_lines as not materialized (

    select * from {{ ref('stg_sales__order_lines') }}

),

products as not materialized (

    select * from {{ ref('stg_sales__products') }}

),

orders as not materialized (

    select * from {{ ref('fct_orders') }}

),

{% if is_incremental() and not changes.full %}
{%- set watermark = incremental_watermark() %}

-- The orders fct_orders wrote since this table last read its log, as one array of keys
-- (`= any(array(...))`): looked up by index whatever the planner guesses the log holds.
-- As joins, raw's statistics taken after a delta was loaded made it hash full scans of
-- raw's 11.7M lines and of this table: the select took 59.4 s for 77.7k lines, and 1.8 s
-- with arrays, at 1M customers (docs/operations/marts.md, "Stop 52").
scope as (

    select cast(key_value as bigint) as order_id
    from (
        {{ changed_keys_since_last_build(changes, ['fct_orders#rows']) | indent(8) }}
    ) as written_orders

),

-- The lines to re-derive, as keys: lines loaded since the watermark (raw's BRIN index on
-- _loaded_at reads only the newest pages), and the lines of every order in scope, which
-- the fact already holds (its order_id index) unless they are new, and so in the first
-- branch. (`loaded_at > watermark OR order_id in scope` on raw scanned all 10.9M lines
-- and joined all of fct_orders at 1M customers: slower than a full refresh.)
--
-- A stored line of an order in scope is re-derived only when what it takes from its
-- order (customer key, cancellation, order time and day; fct_orders is already up to date)
-- differs from what it holds: its own raw row and its product did not change (those come
-- through the first and last branches), so otherwise it would come out equal to its stored
-- row and be dropped by the strategy, after a read of its raw row by primary key, one
-- scattered page per line. Most orders in scope only moved on (shipped to delivered,
-- refunded): 52k of the 78k lines a one-day delta re-derived at 1M customers came out
-- equal (docs/operations/marts.md, "Stop 44"). An order no longer in fct_orders compares
-- as nulls, so its lines are re-derived with them, as a full refresh would. The strategy
-- keeps a re-derived row unless it equals the row of both generations, and so does this
-- filter: when the catch-up after the last publication failed, this generation is a build
-- behind the published one, whose line may hold other values (written by that build, then
-- changed back), and the catch-up after this build's swap copies only the rows it writes.
{%- set published = published_generation(this) %}
{%- set taken_from_the_order = [
    {'name': 'customer_key'}, {'name': 'is_cancelled'}, {'name': 'ordered_date'}, {'name': 'ordered_at'}
] %}
scope_lines as (

    select order_line_id from order_lines where loaded_at > {{ watermark }}

    union

    select previous.order_line_id
    from {{ this }} as previous
    left join orders
        on previous.order_id = orders.order_id
    where previous.order_id = any(array(select order_id from scope))
        -- the strategy's own comparison (rows_are_equal), on the columns taken from the order
        and (
            not ({{ rows_are_equal('previous', 'orders', taken_from_the_order) }})
            {%- if published is not none %}
            or not exists (
                select from {{ published }} as published_line
                where published_line.order_line_id = previous.order_line_id
                    and {{ rows_are_equal('published_line', 'orders', taken_from_the_order) }}
            )
            {%- endif %}
        )

    {%- if has_rows_loaded_since(ref('stg_sales__products'), watermark) %}

    union

    -- every line of a product that changed, only on a day one did (see has_rows_loaded_since)
    select order_lines.order_line_id
    from order_lines
    inner join products
        on order_lines.product_id = products.product_id
    where products.loaded_at > {{ watermark }}
    {%- endif %}

),

{% endif %}

final as (

    select
        order_lines.order_line_id,
        order_lines.order_id,
        order_lines.product_id,
        orders.customer_key,
        products.product_line,
        products.tier_name,
        order_lines.line_number,
        products.tier,
        order_lines.quantity,
        cast(order_lines.unit_price as numeric) as unit_price,
        cast(products.unit_cost as numeric) as unit_cost,
        cast(order_lines.line_revenue as numeric) as line_revenue,
        order_lines.quantity * products.unit_cost as line_cost,
        -- = quantity x unit_margin when sold at list price (fct_orders sums the same rule)
        order_lines.line_revenue - order_lines.quantity * products.unit_cost as line_margin,
        orders.is_cancelled,
        orders.ordered_date,
        orders.ordered_at,
        -- the watermark of incremental builds: any change to the line's order after the
        -- last build was loaded after it too (the order's raw row, above)
        order_lines.loaded_at as source_loaded_at

    from order_lines
    left join orders
        on order_lines.order_id = orders.order_id
    left join products
        on order_lines.product_id = products.product_id
    {% if is_incremental() and not changes.full -%}
    where order_lines.order_line_id = any(array(select order_line_id from scope_lines))
    {%- endif %}

)

select * from final
