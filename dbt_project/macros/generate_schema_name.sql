{#-
    Models land in exactly the schema configured (staging, marts), not <target>_<schema>,
    with one exception: the marts are BUILT in var('marts_build_schema', 'marts_build') and
    reach `marts` only when cem_warehouse.transform.publish swaps them in after the audit
    (write-audit-publish). Analysts and dashboards never see a half-built or failed build.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set schema = (custom_schema_name or target.schema) | trim -%}
    {%- if schema == 'marts' -%}
        {{ var('marts_build_schema', 'marts_build') }}
    {%- else -%}
        {{ schema }}
    {%- endif -%}
{%- endmacro %}
