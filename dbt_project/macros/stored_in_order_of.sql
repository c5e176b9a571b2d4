{#- The rows a model writes, in the order of the key its incremental readers look it up by.

    An incremental build recomputes the customers a delta touched, reading each one's whole
    history through an index. Written in no particular order, a customer's several rows lie
    on as many pages, and the readers visit nearly every page of the table: after three
    days' delta at 1M customers, identity resolution read 461k observations of 46k emails
    from 184,613 of the table's 218k pages. Written in the readers' key order, a customer's
    rows share a page or two. On the bench's kept warehouse, identity resolution's select
    after a one-day delta took 0.74-0.87 s with the observations as the full build wrote
    them, in email order, and 1.24-1.40 s once put back in their old order
    (docs/operations/marts.md, "Stop 60").

    A full build pays for it with a sort. Where that sort is large and the readers gain
    little it is left out: in one run, fct_order_lines in customer order took 12 s more of
    the full build's thread time and saved about 1 s of a three-day build. An incremental
    build sorts only its delta, which it appends: a customer's rows then lie in the block
    the full build wrote and in one more place per build that changed them, so the order
    wears off slowly as the warehouse ages; a full refresh (or CLUSTER on the key's index)
    restores it. -#}
{% macro stored_in_order_of(columns) -%}
order by {{ columns | join(', ') }}
{%- endmacro %}
