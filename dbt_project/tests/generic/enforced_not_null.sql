{#-
    The column is NOT NULL in the catalog, so PostgreSQL refuses any null written to it:
    what `not_null` would prove by scanning every row of a large incremental table on every
    build. The post-hook `set_not_null` (or the model's contract) makes it so. Fails,
    naming the fix, when the column may hold nulls.

    On a model instead of a column, with `columns`, it checks all of them in one test, one
    row per column that may hold nulls. dbt runs each test as a node of its own: at 1M
    customers such a catalog test took 44 ms of a thread's time, 3 ms of it its query, the
    rest dbt's own work per node (compiling, its materialization, logging;
    docs/operations/marts.md, "Stop 78"). So a model's not-nulls are one node, as the
    `set_not_null` post-hook that makes them is one ALTER.
-#}
{% test enforced_not_null(model, column_name=none, columns=none) %}

{%- set tested = tested_columns('enforced_not_null', column_name, columns) %}

select
    tested.column_name,
    'the column is not NOT NULL in {{ model }}: add the post-hook '
    || '{{ "{{" }} set_not_null(''' || tested.column_name || ''') {{ "}}" }}, or test it with not_null' as problem

from unnest(array['{{ tested | join("', '") }}']::text[]) as tested (column_name)

where not exists (
    select from pg_catalog.pg_attribute
    where attrelid = to_regclass('{{ model }}')
        and attname = tested.column_name
        and attnotnull
        and not attisdropped
)

{% endtest %}
