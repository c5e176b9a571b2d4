{#- NPS category from a 0-10 likelihood-to-recommend answer (CEM_DOMAIN.md): 9-10 promoter,
    7-8 passive, 0-6 detractor; null stays null. -#}
{% macro nps_category(ltr_column) -%}
    case
        when {{ ltr_column }} between 9 and 10 then 'promoter'
        when {{ ltr_column }} between 7 and 8 then 'passive'
        when {{ ltr_column }} between 0 and 6 then 'detractor'
    end
{%- endmacro %}
