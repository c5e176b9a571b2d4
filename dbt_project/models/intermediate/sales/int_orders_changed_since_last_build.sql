{#-
    The orders an incremental build of fct_orders re-derives because something of theirs was
    loaded since its watermark: the order row itself, a line, a refund, or a product of a
    line. Each with its lines and refunds summed (macros/orders_summed.sql), which is all
    fct_orders holds for it but the customer key and the numbering.

    Why a model of its own: none of this needs identity resolution, which every mart waits
    for and which runs alone on one of dbt's two threads. Found and summed here, beside it,
    the orders' lines (read one by one by raw's primary key) no longer lengthen the chain;
    fct_orders then only keys and numbers them (docs/operations/marts.md, "Stop 41").

    Rebuilt on every build, from fct_orders' watermark in the generation being built (read
    by name: a ref would make fct_orders its own ancestor). Empty when fct_orders builds in
    full (no table yet, or --full-refresh): it then sums every order itself. Its table
    comment names the state of fct_orders it was built for, which fct_orders checks
    (macros/orders_summed.sql).

    It takes the raw-publish gate as the incremental models do (wait_for_raw_publishes), so
    every raw row loaded after it ran carries a later _loaded_at than every row it read.
    fct_orders re-derives exactly these orders, so its watermark (the newest source_loaded_at
    it holds) cannot step over a row loaded between the two models: the next build takes it.

    Its post-hook also trims the mart change log (macros/change_log.sql, trim_change_log):
    it runs beside the identity observations, not on the chain after them.
-#}

{{
    config(
        pre_hook=["{{ wait_for_raw_publishes(reads_by_watermark=true) }}", "set local work_mem = '256MB'"],
        post_hook=["{{ set_not_null('order_id') }}", "{{ record_changed_orders_handoff() }}", "{{ trim_change_log() }}"],
        indexes=[{'columns': ['order_id'], 'unique': True}],
    )
}}

{%- set stored_orders = fct_orders_in_build() %}

with

-- Import CTEs are `not materialized`: read several times, and a materialized CTE would copy
-- a whole table and lose its indexes.
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

{% if stored_orders is not none %}
{%- set watermark = watermark_of(stored_orders) %}

changed_orders as (

    select order_id from orders where loaded_at > {{ watermark }}

    union

    select order_id from order_lines where loaded_at > {{ watermark }}

    {%- if has_rows_loaded_since(ref('stg_sales__products'), watermark) %}

    union

    -- only on a day a product changed (see has_rows_loaded_since)
    select order_lines.order_id
    from order_lines
    inner join products
        on order_lines.product_id = products.product_id
    where products.loaded_at > {{ watermark }}
    {%- endif %}

    union

    select order_id from refunds where loaded_at > {{ watermark }}

),

{#- Their lines without a scan of all of raw's order lines (no index on order_id there: it
    would cost every sales load). fct_order_lines of this generation holds every line
    loaded up to its own watermark, found by its order_id index, and raw's BRIN index on
    _loaded_at gives the ones loaded since; each is then read by raw's primary key. A line
    that moved to another order is in the second set, and the order_id filter below keeps
    it where it is now. Before fct_order_lines exists, the scan.

    The lookups by key in large tables are arrays (`= any(array(...))`), as in
    fct_order_lines: an array is read by index whatever the planner guesses it holds. As
    joins, raw's orders analyzed just after a three-day delta (56k changed orders, counted
    right) times a sampled 12 stored lines per order (there are 2.2) made it hash a scan of
    raw's 11M lines: 5.1-5.9 s, against 0.6-0.8 s (docs/operations/marts.md, "Stop 53"). #}
{%- set stored_lines = adapter.get_relation(database=this.database, schema=stored_orders.schema, identifier='fct_order_lines') %}
{%- if stored_lines %}

candidate_lines as (

    select order_line_id
    from order_lines
    where loaded_at > least({{ watermark }}, {{ watermark_of(stored_lines) }})

    union

    select stored_lines.order_line_id
    from {{ stored_lines }} as stored_lines
    where stored_lines.order_id = any(array(select order_id from changed_orders))

),
{%- endif %}

{#- The lines by raw's primary key, from the array; their order stays `in (select ...)`:
    raw has no index on order_id, and as a plain filter an array is compared element by
    element with every line. #}
lines_summed as (

    {% set lines_in_scope -%}
    {%- if stored_lines %}
    where order_lines.order_line_id = any(array(select order_line_id from candidate_lines))
        and order_lines.order_id in (select order_id from changed_orders)
    {%- else %}
    where order_lines.order_id in (select order_id from changed_orders)
    {%- endif %}
    {%- endset -%}
    {{ order_lines_summed('order_lines', 'products', where=lines_in_scope) | indent(4) }}

),

refunds_summed as (

    {{ refunds_summed('refunds', where='where order_id in (select order_id from changed_orders)') | indent(4) }}

),

final as (

    {{ orders_with_sums('orders', 'lines_summed', 'refunds_summed', where='where orders.order_id = any(array(select order_id from changed_orders))') | indent(4) }}

)

{% else %}

-- fct_orders builds in full and sums every order itself: nothing to hand it (`where false`:
-- PostgreSQL reads no table for it).
lines_summed as (

    {{ order_lines_summed('order_lines', 'products', where='where false') | indent(4) }}

),

refunds_summed as (

    {{ refunds_summed('refunds', where='where false') | indent(4) }}

),

final as (

    {{ orders_with_sums('orders', 'lines_summed', 'refunds_summed', where='where false') | indent(4) }}

)

{% endif %}

select * from final
