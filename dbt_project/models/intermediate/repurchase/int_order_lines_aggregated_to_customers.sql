{#-
    One row per customer with a purchase as of the as-of date: cross-sell (distinct product
    lines bought) and upgrades. An upgrade (CEM_DOMAIN.md) is a purchase of a higher tier of
    a line already owned: a purchase day on which the customer buys a tier of a product
    line above every tier of that line they bought on earlier days. Buying two tiers of a
    new line on one day is not an upgrade.

    Incremental by customer (macros/change_log.sql): a build recomputes the customers whose
    lines fct_order_lines replaced since the last build, and those with a line dated in the
    days the as-of date moved over; every other customer's row is as it was. It logs the
    customers whose row changed, for fct_customer_repurchase_stored.
-#}

{#- work_mem 256MB: with the default its aggregation of the lines in scope spilled 53 MB to
    temporary files after three days' delta at 1M customers. In two pairs of one-day builds
    on the bench warehouse, alternating 256MB for the whole database with the default, it
    took 1.07-1.18 s against 1.43-1.54 s; the benchmark's builds after the change did not
    show that gain (docs/operations/marts.md, "Stop 77"). -#}

{#- the models whose change log it reads -#}
{%- set producers = ['fct_order_lines'] %}

{{
    config(
        materialized='incremental',
        incremental_strategy='replace_changed_keys',
        unique_key='customer_key',
        change_log_key='customer_key',
        change_log_skip_unchanged=true,
        change_log_replaced_key='customer_key',
        change_log_producers=producers,
        on_schema_change='fail',
        pre_hook=["set local work_mem = '256MB'"],
        post_hook=[
            "{{ record_change_position() }}",
            "{{ set_not_null('customer_key') }}",
        ],
        indexes=[{'columns': ['customer_key'], 'unique': True}],
    )
}}

-- depends_on: {{ ref('fct_orders') }}
{%- set changes = change_log_state(producers) %}

with

order_lines as not materialized (

    select * from {{ ref('fct_order_lines') }}

),

-- Only columns of fct_order_lines' customer_key index, which carries them so that an
-- incremental build reads the lines in scope from the index alone (fct_order_lines.sql):
-- a column read here and not in that index sends it back to the table's pages.
-- `not coalesce(is_cancelled, true)` rather than `not is_cancelled` (the same rows): a
-- filter on the index's rows, not a condition of the index. PostgreSQL 18 (the embedded
-- warehouse) costs a condition on the index's last column as a skip scan over the columns
-- before it, about 25,000 per customer looked up, and so read the whole index in a merge
-- join: 6.0 s for 12,309 customers after a one-day delta at 1M customers, against 0.46 s
-- (docs/operations/marts.md, "Stop 73").
purchased_lines as (

    select
        customer_key,
        product_line,
        tier,
        ordered_date

    from order_lines
    where not coalesce(is_cancelled, true)
        and customer_key is not null
        and ordered_date <= {{ as_of_date() }}
        {%- if not changes.full %}
        -- in key order (macros/change_log.sql, keys_in_order)
        and customer_key in (
            {% call keys_in_order() -%}
            {{ changed_keys_since_last_build(changes) | indent(12) }}

            union

            -- a line's date is its order's: found through fct_orders' index on it
            select customer_key
            from {{ ref('fct_orders') }}
            where ordered_date > cast('{{ changes.previous_as_of }}' as date)
                and ordered_date <= {{ as_of_date() }}
            {%- endcall %}
        )
        {%- endif %}

),

line_days as (

    select
        customer_key,
        product_line,
        ordered_date,
        max(tier) as highest_tier

    from purchased_lines
    where product_line is not null
    group by 1, 2, 3

),

line_days_compared as (

    select
        customer_key,
        product_line,
        ordered_date,
        highest_tier,
        max(highest_tier) over (
            partition by customer_key, product_line
            order by ordered_date asc
            rows between unbounded preceding and 1 preceding
        ) as highest_tier_owned_before

    from line_days

),

customer_keys as (

    select distinct customer_key from purchased_lines

),

lines_summed as (

    select
        customer_key,
        count(distinct product_line) as product_lines_bought,
        count(*) filter (where highest_tier > highest_tier_owned_before) as upgrade_count,
        min(ordered_date) filter (where highest_tier > highest_tier_owned_before) as first_upgrade_date

    from line_days_compared
    group by 1

),

final as (

    select
        customer_keys.customer_key,
        coalesce(lines_summed.product_lines_bought, 0) as product_lines_bought,
        coalesce(lines_summed.upgrade_count, 0) as upgrade_count,
        lines_summed.first_upgrade_date

    from customer_keys
    left join lines_summed
        on customer_keys.customer_key = lines_summed.customer_key

)

select * from final
