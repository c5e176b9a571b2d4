{#-
    The three loyalty indices (advocacy, purchasing, retention; CEM_DOMAIN.md) per calendar
    month (UTC) x customer segment x touchpoint: the mean of the per-response indices of
    fct_survey_responses, with the number of responses behind each mean. Same segment rule as
    fct_nps_monthly ('unknown' for customers the CRM does not know).
-#}

with

counted as (

    select * from {{ ref('int_survey_responses_counted_by_month') }}

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
