{#- The rows a model writes, in the order of the key its incremental readers look it up by.

    An incremental build recomputes the customers a delta touched, reading each one's whole
    history through an index. Written in no particular order, a customer's ten-odd rows lie
    on as many pages, and the readers visit nearly every page of the table: after three
    days' delta at 1M customers, identity resolution read 461k observations of 46k emails
    from 184,613 of the table's 218k pages. Written in the readers' key order, a customer's
    rows share a page or two. Clustered so, on the bench's kept warehouse, the next
    three-day build took 3.19 s for identity resolution instead of 5.95 s, 1.64 s for
    int_order_lines_aggregated_to_customers instead of 3.13 s, and 4.29 s for the churn
    gaps instead of 5.98 s (docs/operations/marts.md, "Stop 60").

    A full build pays for it with a sort. An incremental build sorts only its delta, which
    it appends: a customer's rows then lie in the block the full build wrote and in one
    more place per build that changed them, so the order wears off as the warehouse ages;
    a full refresh (or CLUSTER on the key's index) restores it. -#}
{% macro stored_in_order_of(columns) -%}
order by {{ columns | join(', ') }}
{%- endmacro %}
