{#- The name of the CHECK constraint that keeps `column_name` within [min_value, max_value]
    (either bound may be none): it spells the bounds, so a constraint made for other bounds
    never answers for these. The mart audit (cem_warehouse.quality.catalog_answers,
    between_constraint_name) builds the same name from a GX expectation's kwargs to find it. -#}
{% macro between_constraint_name(column_name, min_value=none, max_value=none) -%}
    {%- set name = column_name ~ '_between_' ~ _constraint_bound(min_value) ~ '_and_' ~ _constraint_bound(max_value) -%}
    {%- if name | length > 63 -%}
        {{ exceptions.raise_compiler_error("constraint name " ~ name ~ " is longer than PostgreSQL's 63 characters: shorten the column name") }}
    {%- endif -%}
    {{- name -}}
{%- endmacro %}

{% macro _constraint_bound(value) -%}
    {{- 'any' if value is none else (value | string | replace('-', 'minus') | replace('.', 'p')) -}}
{%- endmacro %}


{#- Post-hook: keep columns within bounds with CHECK constraints, one per rule
    ({'column': ..., 'min_value': ..., 'max_value': ...}; a missing bound is open), so that
    PostgreSQL refuses any write outside them and the mart audit answers the matching
    `expect_column_values_to_be_between` from the catalog instead of scanning the table on
    every build. Like GX, a null passes. Added by add_missing_check_constraints. -#}
{% macro enforce_between(rules) -%}
    {%- set checks = [] %}
    {%- for rule in rules %}
        {%- set column = adapter.quote(rule['column']) %}
        {%- set conditions = [] %}
        {%- if rule.get('min_value') is not none %}{% do conditions.append(column ~ ' >= ' ~ rule['min_value']) %}{% endif %}
        {%- if rule.get('max_value') is not none %}{% do conditions.append(column ~ ' <= ' ~ rule['max_value']) %}{% endif %}
        {%- if not conditions %}
            {{ exceptions.raise_compiler_error("enforce_between: a rule for " ~ rule['column'] ~ " has neither min_value nor max_value") }}
        {%- endif %}
        {%- do checks.append([
            between_constraint_name(rule['column'], rule.get('min_value'), rule.get('max_value')),
            conditions | join(' and '),
        ]) %}
    {%- endfor %}
    {{- add_missing_check_constraints(checks) -}}
{%- endmacro %}
