{#- The rows a model writes, in the order of the key its incremental readers look it up by.

    An incremental build recomputes the customers a delta touched, reading each one's whole
    history through an index. Written in no particular order, a customer's ten-odd rows lie
    on as many pages, and the readers visit nearly every page of the table: after three
    days' delta at 1M customers, identity resolution read 461k observations of 46k emails
    from 184,613 of the table's 218k pages. Written in the readers' key order, a customer's
    rows share a page or two: after a CLUSTER of the observations by email on the bench's
    kept warehouse, the same select took 1.53-1.61 s instead of 2.28-2.51 s
    (docs/operations/marts.md, "Stop 60").

    A full build pays for it with a sort; where that sort is large and the readers gain
    little it is left out (fct_order_lines: 12 s of the full build's thread time for about
    1 s of a three-day build). An incremental build sorts only its delta, which it appends:
    a customer's rows then lie in the block the full build wrote and in one more place per
    build that changed them, so the order wears off slowly as the warehouse ages; a full
    refresh (or CLUSTER on the key's index) restores it. -#}
{% macro stored_in_order_of(columns) -%}
order by {{ columns | join(', ') }}
{%- endmacro %}
