{#- Whole calendar months from the month of from_date to the month of to_date (the day of
    the month is ignored): 2024-12-31 -> 2025-01-01 is 1, 2025-01-01 -> 2025-01-31 is 0,
    2025-01-31 -> 2026-02-01 is 13. -#}
{% macro calendar_months_between(from_date, to_date) -%}
    cast(
        (extract(year from {{ to_date }}) - extract(year from {{ from_date }})) * 12
        + (extract(month from {{ to_date }}) - extract(month from {{ from_date }}))
        as integer
    )
{%- endmacro %}
