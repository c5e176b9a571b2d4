{#- NPS = 100 * (promoters - detractors) / responses, in [-100, 100] (CEM_DOMAIN.md). -#}
{% macro nps_score(promoters, detractors, responses) -%}
    round(100.0 * ({{ promoters }} - {{ detractors }}) / nullif({{ responses }}, 0), 2)
{%- endmacro %}

{#- 95% margin of error: 1.96 * 100 * sqrt((p + d - (p - d)^2) / n), p and d the promoter and
    detractor shares, n the responses. -#}
{% macro nps_margin_of_error(promoters, detractors, responses) -%}
    round(
        cast(
            1.96 * 100 * sqrt(
                (
                    ({{ promoters }}::numeric / nullif({{ responses }}, 0))
                    + ({{ detractors }}::numeric / nullif({{ responses }}, 0))
                    - power(({{ promoters }} - {{ detractors }})::numeric / nullif({{ responses }}, 0), 2)
                ) / nullif({{ responses }}, 0)
            ) as numeric
        ),
        2
    )
{%- endmacro %}
