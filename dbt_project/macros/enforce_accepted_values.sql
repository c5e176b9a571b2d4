{#- The name of the CHECK constraint that keeps `column_name` to `values`: the values are
    part of it (a hash), so a constraint made for another list never answers for this one. -#}
{% macro accepted_values_constraint_name(column_name, values) -%}
    {{- column_name ~ '_accepted_values_' ~ local_md5(values | map('string') | join('|'))[:8] -}}
{%- endmacro %}


{#- Post-hook: keep `column_name` to `values` with a CHECK constraint, so that PostgreSQL
    refuses any write outside them and the `enforced_accepted_values` test can check the
    catalog instead of scanning the table on every build. Added by
    add_missing_check_constraints. -#}
{% macro enforce_accepted_values(column_name, values) -%}
    {%- set condition -%}
        {{ adapter.quote(column_name) }} in (
            {%- for value in values %}'{{ value | replace("'", "''") }}'{{ ', ' if not loop.last }}{% endfor -%}
        )
    {%- endset -%}
    {{- add_missing_check_constraints([[accepted_values_constraint_name(column_name, values), condition]]) -}}
{%- endmacro %}
