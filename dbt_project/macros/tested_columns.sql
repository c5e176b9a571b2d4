{#- The columns a catalog test (enforced_primary_key, enforced_not_null) checks: the one it
    is set on, or, set on a model, its `columns` (a name or a list). A test given neither
    stops the build with a message saying where the column goes, instead of checking a
    column named 'None'. -#}
{% macro tested_columns(test_name, column_name, columns) -%}
    {%- set listed = [columns] if columns is string else (columns or []) -%}
    {%- set tested = listed if listed else ([column_name] if column_name else []) -%}
    {%- if not tested -%}
        {{ exceptions.raise_compiler_error(test_name ~ " names no column: set it under a column, or on the model with `columns: [...]`") }}
    {%- endif -%}
    {{ return(tested) }}
{%- endmacro %}
