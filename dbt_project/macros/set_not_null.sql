{#- Post-hook: mark key columns NOT NULL, so that with the model's unique index PostgreSQL
    enforces its primary key and the `enforced_primary_key` test can check the catalog
    instead of scanning the table. Validated by one scan after a build in full; a no-op
    when the column already is NOT NULL (an incremental build). -#}
{% macro set_not_null(column_name) -%}
    alter table {{ this }} alter column {{ adapter.quote(column_name) }} set not null
{%- endmacro %}
