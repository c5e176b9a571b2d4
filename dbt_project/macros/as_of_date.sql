{#-
    The date every "as of" mart is computed for, as a SQL expression of type date.

    Resolved once per build by int_as_of_date (see there for the rule), so every model of a
    build agrees on it and a rebuild with the same inputs gives the same marts: the clock
    (now(), current_date) is never read.
-#}
{% macro as_of_date() -%}
    (select as_of_date from {{ ref('int_as_of_date') }})
{%- endmacro %}
