{#-
    The column is a key PostgreSQL itself enforces, so no write can ever leave a null or a
    duplicate in it: the table's PRIMARY KEY constraint (raw tables: the loader upserts on
    it), or a unique index on exactly that column with the column NOT NULL (the large
    incremental models: the index is declared in their config, NOT NULL by their contract
    or by the post-hook `set_not_null`). Checking this in the catalog proves what a scan
    for duplicates would, in milliseconds instead of a scan of millions of rows on every
    build. Fails, naming the problem, when neither holds.

    A view (the staging models) qualifies when PostgreSQL's own plan for reading its key is
    a scan of one table, with no join, aggregate or set-returning step that could repeat
    or invent a row, and outputs a column of that table unchanged: then the view's keys
    are a subset of that column's, and the catalog check above runs on that column. A
    view the planner cannot prove that for fails, saying so: test it with primary_key.

    On a model instead of a column, with `columns`, it checks a key of several columns (the
    grain, as `customer_key` and `purchase_date` of the purchase days) the same way: a
    unique index on exactly those columns, all NOT NULL. A view's key of several columns is
    not checked: test it with primary_key.
-#}
{% test enforced_primary_key(model, column_name=none, columns=none) %}

{%- set tested = tested_columns('enforced_primary_key', column_name, columns) -%}
{%- set key_columns = tested | sort -%}
{%- set checked = {'relation': model ~ '', 'column': key_columns | join(', '), 'problem': none} -%}
{%- if execute -%}
    {%- set kind = run_query("select relkind from pg_catalog.pg_class where oid = to_regclass('" ~ model ~ "')") -%}
    {%- if kind.rows | length == 1 and kind.rows[0][0] == 'v' -%}
        {%- if key_columns | length == 1 -%}
            {%- do checked.update(projected_key_of_view(model, key_columns[0])) -%}
            {#- the view's column is the table column it passes through -#}
            {%- set key_columns = [checked.column] -%}
        {%- else -%}
            {%- do checked.update({'problem': model ~ ' is a view: its key of several columns is not checked in the catalog; test it with primary_key'}) -%}
        {%- endif -%}
    {%- endif -%}
{%- endif %}

with

relation as (

    select to_regclass('{{ checked.relation }}') as relation_id

),

key_constraint_columns as (

    select
        key_constraint.conname as enforced_by,
        array_agg(attribute.attname order by attribute.attname) as columns

    from pg_catalog.pg_constraint as key_constraint
    inner join pg_catalog.pg_attribute as attribute
        on attribute.attrelid = key_constraint.conrelid
        and attribute.attnum = any(key_constraint.conkey)
    where key_constraint.conrelid = (select relation_id from relation)
        and key_constraint.contype = 'p'
    group by 1

),

unique_index_columns as (

    select
        index_class.relname as enforced_by,
        array_agg(attribute.attname order by attribute.attname) as columns,
        bool_and(attribute.attnotnull) as all_not_null

    from pg_catalog.pg_index as unique_index
    inner join pg_catalog.pg_class as index_class
        on index_class.oid = unique_index.indexrelid
    inner join pg_catalog.pg_attribute as attribute
        on attribute.attrelid = unique_index.indrelid
        and attribute.attnum = any(unique_index.indkey)
    where unique_index.indrelid = (select relation_id from relation)
        and unique_index.indisunique
        and unique_index.indisvalid
        and unique_index.indpred is null
        and unique_index.indexprs is null
    group by 1

),

enforcing as (

    select enforced_by from key_constraint_columns
    where columns = array['{{ key_columns | join("', '") }}']::name[]

    union all

    select enforced_by from unique_index_columns
    where columns = array['{{ key_columns | join("', '") }}']::name[]
        and all_not_null

)

select
    '{{ tested | join(', ') }}' as column_name,
    {%- if checked.problem %}
    '{{ checked.problem | replace("'", "''") }}' as problem
    {%- else %}
    case
        when (select relation_id from relation) is null then 'the relation does not exist'
        else 'no PRIMARY KEY on {{ checked.relation }} ({{ checked.column }}) alone, and no unique index on exactly that with every column NOT NULL'
    end as problem

where not exists (select from enforcing)
    {%- endif %}

{% endtest %}
