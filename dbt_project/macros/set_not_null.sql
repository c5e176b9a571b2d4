{#- Post-hook: mark columns NOT NULL (a column name or a list of them), so that PostgreSQL
    refuses a null in them: with the model's unique index it enforces its primary key, and
    the `enforced_primary_key` and `enforced_not_null` tests check the catalog instead of
    scanning the table. One ALTER validates every column in one scan after a build in full;
    a no-op for columns already NOT NULL (an incremental build). -#}
{% macro set_not_null(column_names) -%}
    {%- set columns = [column_names] if column_names is string else column_names -%}
    alter table {{ this }}
    {%- for column in columns %}
        alter column {{ adapter.quote(column) }} set not null{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}
