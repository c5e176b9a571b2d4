{#-
    The date every "as of" mart is computed for, as a SQL expression of type date.

    Resolved once per build by int_as_of_date (see there for the rule), so every model of a
    build agrees on it and a rebuild with the same inputs gives the same marts: the clock
    (now(), current_date) is never read.

    Written into a model's SQL as a literal, read when the model runs (dbt compiles a node
    right before running it, after int_as_of_date, which every user of this macro depends
    on, was built). As a subquery the planner does not know the date, and guesses that a
    third of every table falls on either side of it: at 1M customers the purchase days then
    read all 5M orders by their date index, 13.5-14.4 s instead of 1.3-1.8 s, on every build
    of one of the two generations (docs/operations/marts.md, "Stop 58"). The watermarks are
    literals for the same reason (incremental_watermark).

    The subquery stays where there is no table to read yet (dbt parsing, a first compile)
    and in unit tests, whose int_as_of_date is a fixture.
-#}
{% macro as_of_date() -%}
    {%- set relation = ref('int_as_of_date') -%}
    {%- if execute and this is not none and model.resource_type == 'model'
            and adapter.get_relation(relation.database, relation.schema, relation.identifier) is not none -%}
        {%- set found = run_query('select cast(as_of_date as text) from ' ~ relation) -%}
        {%- if found.rows | length == 1 and found.rows[0][0] is not none -%}
            cast('{{ found.rows[0][0] }}' as date)
        {%- else -%}
            (select as_of_date from {{ relation }})
        {%- endif -%}
    {%- else -%}
        (select as_of_date from {{ relation }})
    {%- endif -%}
{%- endmacro %}
