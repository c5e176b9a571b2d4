{#-
    The three loyalty indices (advocacy, purchasing, retention; CEM_DOMAIN.md) per calendar
    month (UTC) x customer segment x touchpoint: the mean of the per-response indices of
    fct_survey_responses, with the number of responses behind each mean. Same segment rule as
    fct_nps_monthly ('unknown' for customers the CRM does not know).
-#}

with

survey_responses as (

    select * from {{ ref('fct_survey_responses') }}

),

customers as (

    select * from {{ ref('dim_customers') }}

),

segmented as (

    select
        {{ month_start('survey_responses.responded_date') }} as response_month,
        coalesce(customers.segment, 'unknown') as segment,
        survey_responses.touchpoint,
        survey_responses.advocacy_loyalty_index,
        survey_responses.purchasing_loyalty_index,
        survey_responses.retention_loyalty_index

    from survey_responses
    left join customers
        on survey_responses.customer_key = customers.customer_key

),

counted as (

    select
        response_month,
        segment,
        touchpoint,
        count(*) as responses,
        count(advocacy_loyalty_index) as advocacy_responses,
        count(purchasing_loyalty_index) as purchasing_responses,
        count(retention_loyalty_index) as retention_responses,
        avg(advocacy_loyalty_index) as advocacy_unrounded,
        avg(purchasing_loyalty_index) as purchasing_unrounded,
        avg(retention_loyalty_index) as retention_unrounded

    from segmented
    group by 1, 2, 3

),

final as (

    select
        response_month || '|' || segment || '|' || touchpoint as loyalty_indices_monthly_id,
        segment,
        touchpoint,
        responses,
        advocacy_responses,
        purchasing_responses,
        retention_responses,
        round(advocacy_unrounded, 2) as advocacy_loyalty_index,
        round(purchasing_unrounded, 2) as purchasing_loyalty_index,
        round(retention_unrounded, 2) as retention_loyalty_index,
        response_month

    from counted

)

select * from final
