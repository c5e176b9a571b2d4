{#-
    What fct_advocacy_by_loyalty_category counts of the customers, per loyalty category:
    customers, buyers, repeat and multi-line buyers, the product lines beyond the first
    summed over the customers who bought (with their count, for the mean), referrers,
    churned customers, revenue and gross margin. From int_customers_advocate_behaviours,
    which holds every dim_customers row with what it counts as of the as-of date.

    Kept by the behaviours' own writes (macros/counted_by_triggers.sql): their table's
    statement triggers add the cells of the rows each build inserts and take away those of
    the rows it deletes, so the advocacy mart reads four cells instead of counting a million
    customers on every build (0.38 s of its 0.89-1.03 s at 1M customers in stop 55's
    measurement; docs/operations/marts.md, "Stop 66"). Counted in full when the table is
    built, or when the behaviours' table was replaced since. Every measure is a count or a
    sum that is never null, so a cell can be added to and taken from.
-#}

{%- set producer = 'int_customers_advocate_behaviours' %}

{%- set counting %}
select
    loyalty_category,
    count(*) as customers,
    count(*) filter (where is_buyer) as buyers,
    count(*) filter (where frequency >= 1) as repeat_customers,
    count(*) filter (where product_lines_bought > 1) as multi_line_customers,
    count(product_lines_bought) as customers_with_product_lines,
    coalesce(sum(product_lines_bought - 1), 0) as additional_product_lines,
    count(*) filter (where is_referrer) as referrers,
    count(*) filter (where is_churned) as churned_customers,
    coalesce(sum(revenue), 0) as revenue,
    coalesce(sum(gross_margin), 0) as gross_margin

from __counted_rows__
group by loyalty_category
{%- endset %}

{{
    config(
        materialized='incremental',
        incremental_strategy='kept_by_producer_triggers',
        unique_key='loyalty_category',
        counted_from=producer,
        counted_measures=['customers', 'buyers', 'repeat_customers', 'multi_line_customers', 'customers_with_product_lines', 'additional_product_lines', 'referrers', 'churned_customers', 'revenue', 'gross_margin'],
        counted_select=counting,
        on_schema_change='fail',
        post_hook="{{ keep_counts_by_triggers() }}",
        indexes=[{'columns': ['loyalty_category'], 'unique': True}],
    )
}}

{{ counted_rows(counting, ref(producer)) }}
