{#-
    The parameters of churn, lifecycle and the contact-center follow-up, in one place
    (docs/metrics.md). Each can be overridden with a dbt var of the same name.

    Churn (CEM_DOMAIN.md): a customer is churned when they have not purchased for
    threshold = max(floor, multiple x their median inter-purchase gap) days (default
    max(90, 3 x median gap)), rounded up to whole days, or when they cancelled explicitly.
-#}
{% macro churn_threshold_floor_days() -%}
    {{ var('churn_threshold_floor_days', 90) }}
{%- endmacro %}

{% macro churn_threshold_gap_multiple() -%}
    {{ var('churn_threshold_gap_multiple', 3) }}
{%- endmacro %}

{#- Lifecycle: a customer is "new" for this many days after their first purchase, and
    "won back" for this many days after the purchase that won them back. -#}
{% macro lifecycle_new_days() -%}
    {{ var('lifecycle_new_days', 90) }}
{%- endmacro %}

{% macro lifecycle_won_back_days() -%}
    {{ var('lifecycle_won_back_days', 90) }}
{%- endmacro %}

{#- Contact-center follow-up: repurchase within 90 days and churn within 180 days after a
    support case's last contact. Churn needs the longer window because a customer who stops
    buying is churned only threshold days (at least 90) after their last purchase. -#}
{% macro contact_repurchase_window_days() -%}
    {{ var('contact_repurchase_window_days', 90) }}
{%- endmacro %}

{% macro contact_churn_window_days() -%}
    {{ var('contact_churn_window_days', 180) }}
{%- endmacro %}

{#- The day both follow-up windows after a case's last contact have ended: from then on the
    case is followed up (int_support_cases_followed_up). -#}
{% macro follow_up_end_date(last_contact_date='last_contact_date') -%}
    {{ last_contact_date }} + greatest({{ contact_churn_window_days() }}, {{ contact_repurchase_window_days() }})
{%- endmacro %}
