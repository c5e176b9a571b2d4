{#-
    A customer key names a CRM customer when it is that customer's customer_id as text
    (int_customers_resolved_across_sources); an inferred key is not a number. One rule for
    the models that go from keys back to the CRM records, which they look up by the raw
    table's primary key (a join on the id cast to text cannot use it).
-#}

{#- The keys that are CRM customer ids: a regular expression (also for configs such as
    change_log_key_patterns). -#}
{% macro crm_customer_key_pattern() -%}
    {{- return('^[0-9]{1,18}$') -}}
{%- endmacro %}


{#- The CRM customer_id a key names, as bigint; null for an inferred key. -#}
{% macro crm_customer_id(key) -%}
    case when {{ key }} ~ '{{ crm_customer_key_pattern() }}' then cast({{ key }} as bigint) end
{%- endmacro %}


{#- A select of the CRM customer ids among the keys of `keys` (a CTE or table of key_value). -#}
{% macro crm_customer_ids_in(keys) -%}
    select cast(key_value as bigint) from {{ keys }} where key_value ~ '{{ crm_customer_key_pattern() }}'
{%- endmacro %}
