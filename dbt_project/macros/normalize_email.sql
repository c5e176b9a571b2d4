{#- An email as an identity key: surrounding spaces, tabs and line breaks stripped, lower-cased,
    empty as null. Sales and survey emails are typed by people, so case and whitespace vary
    (docs/sources/sales.md, surveys.md); the CRM's are normally clean but go through the same
    rule so all three sources match. Plain trim() strips spaces only, not tabs. -#}
{% macro normalize_email(email_column) -%}
    nullif(lower(btrim({{ email_column }}, E' \t\r\n')), '')
{%- endmacro %}
