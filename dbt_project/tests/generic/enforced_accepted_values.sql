{#-
    The column holds only `values` (or null), as PostgreSQL itself enforces: a validated
    CHECK constraint made for exactly these values by the post-hook `enforce_accepted_values`
    (its name carries a hash of them). Checking the catalog proves what `accepted_values`
    would by scanning every row of a large incremental table on every build. Fails, naming
    the constraint to add, when there is none.
-#}
{% test enforced_accepted_values(model, column_name, values) %}

{%- set name = accepted_values_constraint_name(column_name, values) %}

select
    '{{ column_name }}' as column_name,
    'no validated CHECK constraint {{ name }} on {{ model }}: add the post-hook '
    || '{{ "{{" }} enforce_accepted_values(''{{ column_name }}'', [...]) {{ "}}" }} with the same values, '
    || 'or test it with accepted_values' as problem

where not exists (
    select from pg_catalog.pg_constraint
    where conrelid = to_regclass('{{ model }}')
        and conname = '{{ name }}'
        and contype = 'c'
        and convalidated
)

{% endtest %}
