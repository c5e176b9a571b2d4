{#-
    The months of contacts, as keys in the change log.

    fct_support_contacts_monthly reports medians and counts of distinct cases per month and
    channel: figures that cannot be kept by adding and taking away rows, only recomputed
    from a month's contacts. So fct_support_interactions logs, beside the customer of every
    contact it replaces or writes, the month that contact started in, and
    int_support_contacts_counted_by_month recomputes those months alone.

    A month key is 'month=YYYY-MM-DD' (the month's first day, UTC; to_char, so the session's
    DateStyle cannot change it), or 'month=none' for contacts without a start time. It
    shares the producer's log with customer keys (digits, or 'inferred-' and a hash), so
    each reader picks its kind with change_log_key_patterns.
-#}

{% macro contact_month_key(date_expression) -%}
    {{- return("'month=' || coalesce(to_char(" ~ month_start(date_expression) ~ ", 'YYYY-MM-DD'), 'none')") -}}
{%- endmacro %}


{#- The month keys among a log's keys, and the others (a negative lookahead). -#}
{% macro contact_month_key_pattern() -%}
    {{- return('^month=') -}}
{%- endmacro %}


{% macro not_contact_month_key_pattern() -%}
    {{- return('^(?!month=)') -}}
{%- endmacro %}


{#- The first day of a month key's month, as a date; null for 'month=none'. -#}
{% macro contact_month_of_key(key) -%}
    case when {{ key }} <> 'month=none' then to_date(substr({{ key }}, 7), 'YYYY-MM-DD') end
{%- endmacro %}
