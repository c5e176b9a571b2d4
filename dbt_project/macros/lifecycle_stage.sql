{#- A customer's lifecycle stage as of `as_of` (a date expression), from the dates that
    decide it (int_customers_churn_assessed describes the rules), read from the columns of
    those names unless others are given. One definition for the stage a build writes and
    for finding the stored stages a moved as-of date changes. -#}
{% macro lifecycle_stage(
    as_of,
    is_churned='is_churned',
    first_purchase_date='first_purchase_date',
    won_back_date='won_back_date',
    last_purchase_date='last_purchase_date',
    threshold_days='threshold_days'
) -%}
    case
        when {{ is_churned }} then 'churned'
        when {{ as_of }} - {{ first_purchase_date }} <= {{ lifecycle_new_days() }} then 'new'
        when {{ as_of }} - {{ won_back_date }} <= {{ lifecycle_won_back_days() }} then 'won back'
        when {{ as_of }} - {{ last_purchase_date }} > {{ threshold_days }} / 2.0 then 'at-risk'
        else 'active'
    end
{%- endmacro %}
