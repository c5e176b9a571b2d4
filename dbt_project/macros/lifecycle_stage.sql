{#- A customer's lifecycle stage as of `as_of` (a date expression), from the dates that
    decide it: the columns of those names, of the table aliased `relation` when one is
    given. The first rule that holds:
    1. churned  - churned (int_purchase_gaps_assessed_for_churn);
    2. new      - first purchase at most lifecycle_new_days (90) days before `as_of`;
    3. won back - won back by a purchase at most lifecycle_won_back_days (90) days before;
    4. at-risk  - more than half their churn threshold since the last purchase;
    5. active   - everyone else.
    Customers without a purchase are 'prospect' in dim_customers.
    Worked out at read time by the views fct_customer_churn and dim_customers, from the
    dates fct_customer_churn_stored keeps and their generation's as-of date: it moves with
    the date alone, and stored it made every build rewrite the customers it moved. -#}
{% macro lifecycle_stage(as_of, relation=none) -%}
    {%- set prefix = (relation ~ '.') if relation else '' -%}
    case
        when {{ prefix }}is_churned then 'churned'
        when {{ as_of }} - {{ prefix }}first_purchase_date <= {{ lifecycle_new_days() }} then 'new'
        when {{ as_of }} - {{ prefix }}won_back_date <= {{ lifecycle_won_back_days() }} then 'won back'
        when {{ as_of }} - {{ prefix }}last_purchase_date > {{ prefix }}threshold_days / 2.0 then 'at-risk'
        else 'active'
    end
{%- endmacro %}
