{#-
    For raw tables: the column is the table's PRIMARY KEY constraint, so PostgreSQL itself
    refuses a null or a duplicate on every write (the loader upserts on it). Checking the
    constraint in the catalog proves the same as scanning for duplicates, in milliseconds
    instead of a scan of every raw row on every build. Fails when the table has no primary
    key, or one on other columns.
-#}
{% test enforced_primary_key(model, column_name) %}

with

primary_key_columns as (

    select attribute.attname as column_name

    from pg_catalog.pg_constraint as key_constraint
    inner join pg_catalog.pg_attribute as attribute
        on attribute.attrelid = key_constraint.conrelid
        and attribute.attnum = any(key_constraint.conkey)
    where key_constraint.conrelid = to_regclass('{{ model }}')
        and key_constraint.contype = 'p'

),

expected as (

    select '{{ column_name }}' as column_name

)

select
    coalesce(expected.column_name, primary_key_columns.column_name) as column_name,
    case
        when primary_key_columns.column_name is null then 'not in the primary key (or no primary key)'
        else 'in the primary key but not expected'
    end as problem

from expected
full outer join primary_key_columns
    on expected.column_name = primary_key_columns.column_name
where expected.column_name is null
    or primary_key_columns.column_name is null

{% endtest %}
