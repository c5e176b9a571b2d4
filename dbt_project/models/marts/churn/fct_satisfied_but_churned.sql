{#-
    "Is satisfaction enough?" Satisfied-but-churned share = churned customers whose last CSAT
    on or before their churned date was 4 or more, over churned customers with any CSAT by
    then (CEM_DOMAIN.md). Churned = churned as of the as-of date (fct_customer_churn).
    One row overall, one per segment (CRM segment; 'unknown' for customers known only from
    sales or surveys) and one per NPS category of the last LTR answer before churn
    ('unknown' without one). Every churned customer is in the overall row and in exactly one
    row of each breakdown.
-#}

with

churn as (

    select * from {{ ref('fct_customer_churn') }}

),

churned_customers as (

    select
        customer_key,
        segment,
        coalesce(last_nps_category_before_churn, 'unknown') as loyalty_category_before_churn,
        last_csat_before_churn,
        is_satisfied_before_churn

    from churn
    where is_churned

),

breakdowns as (

    select
        'overall' as breakdown,
        'all' as breakdown_value,
        churned_customers.*

    from churned_customers

    union all

    select
        'segment' as breakdown,
        segment as breakdown_value,
        churned_customers.*

    from churned_customers

    union all

    select
        'loyalty category before churn' as breakdown,
        loyalty_category_before_churn as breakdown_value,
        churned_customers.*

    from churned_customers

),

counted as (

    select
        breakdown,
        breakdown_value,
        count(*) as churned_customers,
        count(last_csat_before_churn) as churned_customers_with_csat,
        count(*) filter (where is_satisfied_before_churn) as satisfied_churned_customers

    from breakdowns
    group by 1, 2

),

final as (

    select
        breakdown || '|' || breakdown_value as satisfied_but_churned_id,
        breakdown,
        breakdown_value,
        churned_customers,
        churned_customers_with_csat,
        satisfied_churned_customers,
        round(satisfied_churned_customers::numeric / nullif(churned_customers_with_csat, 0), 4)
        as satisfied_but_churned_share,
        {{ as_of_date() }} as as_of_date

    from counted

)

select * from final
