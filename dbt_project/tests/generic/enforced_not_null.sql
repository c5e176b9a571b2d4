{#-
    The column is NOT NULL in the catalog, so PostgreSQL refuses any null written to it:
    what `not_null` would prove by scanning every row of a large incremental table on every
    build. The post-hook `set_not_null` (or the model's contract) makes it so. Fails,
    naming the fix, when the column may hold nulls.
-#}
{% test enforced_not_null(model, column_name) %}

select
    '{{ column_name }}' as column_name,
    'the column is not NOT NULL in {{ model }}: add the post-hook '
    || '{{ "{{" }} set_not_null(''{{ column_name }}'') {{ "}}" }}, or test it with not_null' as problem

where not exists (
    select from pg_catalog.pg_attribute
    where attrelid = to_regclass('{{ model }}')
        and attname = '{{ column_name }}'
        and attnotnull
        and not attisdropped
)

{% endtest %}
