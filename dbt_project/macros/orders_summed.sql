{#-
    An order with its lines and refunds summed: everything fct_orders holds for it but the
    customer key and the numbering. fct_orders computes it for every order in a full build;
    int_orders_changed_since_last_build for the orders an incremental build re-derives,
    before identity resolution is done. One definition for both, so the two cannot drift.

    Each macro is the body of a CTE; `where` narrows its rows (empty: all of them).
-#}

{#- Line margin = line revenue - quantity x unit cost (= quantity x unit_margin at list
    price); fct_order_lines.line_margin uses the same rule. -#}
{% macro order_lines_summed(order_lines, products, where='') -%}
    select
        {{ order_lines }}.order_id,
        count(*) as line_count,
        sum({{ order_lines }}.quantity) as item_quantity,
        sum({{ order_lines }}.line_revenue) as revenue,
        sum({{ order_lines }}.line_revenue - {{ order_lines }}.quantity * {{ products }}.unit_cost) as gross_margin,
        max({{ order_lines }}.loaded_at) as loaded_at

    from {{ order_lines }}
    left join {{ products }}
        on {{ order_lines }}.product_id = {{ products }}.product_id
    {{ where }}
    group by 1
{%- endmacro %}


{% macro refunds_summed(refunds, where='') -%}
    select
        order_id,
        sum(refund_amount) as refunded_amount,
        max(refunded_at) as last_refunded_at,
        max(loaded_at) as loaded_at

    from {{ refunds }}
    {{ where }}
    group by 1
{%- endmacro %}


{#- The columns, in this order, of orders_with_sums: fct_orders lines its stored rows up
    with them. -#}
{% macro orders_with_sums_columns() -%}
    {{ return(['order_id', 'sales_account_id', 'customer_email', 'order_status', 'currency', 'order_total', 'is_cancelled', 'is_refunded', 'ordered_date', 'ordered_at', 'updated_at', 'line_count', 'item_quantity', 'revenue', 'gross_margin', 'refunded_amount', 'has_refund', 'last_refunded_at', 'source_loaded_at']) }}
{%- endmacro %}


{% macro orders_with_sums(orders, lines_summed, refunds_summed, where='') -%}
    select
        {{ orders }}.order_id,
        {{ orders }}.sales_account_id,
        {{ orders }}.customer_email,
        {{ orders }}.order_status,
        cast({{ orders }}.currency as text) as currency,
        -- as the contract's numeric: the type incremental builds compare against
        cast({{ orders }}.order_total as numeric) as order_total,
        coalesce({{ orders }}.is_cancelled, false) as is_cancelled,
        coalesce({{ orders }}.is_refunded, false) as is_refunded,
        {{ orders }}.ordered_date,
        {{ orders }}.ordered_at,
        {{ orders }}.updated_at,
        coalesce({{ lines_summed }}.line_count, 0) as line_count,
        coalesce({{ lines_summed }}.item_quantity, 0) as item_quantity,
        coalesce({{ lines_summed }}.revenue, 0) as revenue,
        coalesce({{ lines_summed }}.gross_margin, 0) as gross_margin,
        coalesce({{ refunds_summed }}.refunded_amount, 0) as refunded_amount,
        {{ refunds_summed }}.order_id is not null as has_refund,
        {{ refunds_summed }}.last_refunded_at,
        -- the watermark of fct_orders: newest _loaded_at of the order, its lines, refunds
        greatest({{ orders }}.loaded_at, {{ lines_summed }}.loaded_at, {{ refunds_summed }}.loaded_at) as source_loaded_at

    from {{ orders }}
    left join {{ lines_summed }}
        on {{ orders }}.order_id = {{ lines_summed }}.order_id
    left join {{ refunds_summed }}
        on {{ orders }}.order_id = {{ refunds_summed }}.order_id
    {{ where }}
{%- endmacro %}


{#-
    int_orders_changed_since_last_build is computed from fct_orders' watermark before
    fct_orders runs, and is right only for that state of fct_orders. It records which state
    in its table comment; fct_orders refuses one built for another (`dbt run --select
    fct_orders` alone, or twice after it), which would otherwise miss the orders changed
    since, silently.
-#}
{% macro fct_orders_in_build() -%}
    {#- fct_orders of the generation being built, when the next build of it is incremental. -#}
    {%- set stored_orders = adapter.get_relation(database=target.database, schema=generate_schema_name('marts', none), identifier='fct_orders') -%}
    {{- return(stored_orders if stored_orders is not none and not flags.FULL_REFRESH else none) -}}
{%- endmacro %}


{% macro changed_orders_handoff_label(watermark=none) -%}
    {{- 'fct_orders builds in full' if watermark is none else 'changed since fct_orders watermark ' ~ watermark -}}
{%- endmacro %}


{% macro record_changed_orders_handoff() -%}
    {%- set stored_orders = fct_orders_in_build() -%}
    {%- set label = changed_orders_handoff_label(watermark_of(stored_orders) if stored_orders is not none else none) -%}
    comment on table {{ this }} is $handoff${{ label }}$handoff$
{%- endmacro %}


{% macro assert_changed_orders_handoff(changed_orders, watermark) -%}
    {#- Only where the model runs: `dbt docs generate` and `dbt compile` render its SQL too,
        between builds, when fct_orders has moved on from the hand-off by design. -#}
    {%- if execute and flags.WHICH in ['run', 'build', 'retry'] -%}
        {%- set query -%}
            select coalesce(obj_description(cast('{{ changed_orders }}' as regclass), 'pg_class'), '')
        {%- endset -%}
        {%- set recorded = run_query(query).columns[0].values()[0] -%}
        {%- set expected = changed_orders_handoff_label(watermark) -%}
        {%- if recorded != expected -%}
            {{ exceptions.raise_compiler_error(
                changed_orders ~ " was built for another state of fct_orders (it says '" ~ recorded
                ~ "', fct_orders is at '" ~ expected ~ "'). Build the two together, e.g. "
                ~ "dbt build --select int_orders_changed_since_last_build fct_orders (or +fct_orders)."
            ) }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
