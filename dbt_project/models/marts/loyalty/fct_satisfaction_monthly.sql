{#-
    CSAT and customer effort (CES) per calendar month (UTC) x customer segment x touchpoint.
    Same cells and segment rule as fct_nps_monthly ('unknown' for customers the CRM does not
    know); each measure has its own n, since CES is not asked on the relationship survey.
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
        survey_responses.csat_score,
        survey_responses.ces_score

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
        count(csat_score) as csat_responses,
        count(*) filter (where csat_score >= 4) as top_2_box_csat_responses,
        count(ces_score) as ces_responses,
        count(*) filter (where ces_score >= 5) as low_effort_responses,
        avg(csat_score) as mean_csat_unrounded,
        avg(ces_score) as mean_ces_unrounded

    from segmented
    group by 1, 2, 3

),

final as (

    select
        response_month || '|' || segment || '|' || touchpoint as satisfaction_monthly_id,
        segment,
        touchpoint,
        responses,
        csat_responses,
        top_2_box_csat_responses,
        ces_responses,
        low_effort_responses,
        round(mean_csat_unrounded, 2) as mean_csat,
        round(top_2_box_csat_responses::numeric / nullif(csat_responses, 0), 4) as top_2_box_csat_share,
        round(mean_ces_unrounded, 2) as mean_ces,
        round(low_effort_responses::numeric / nullif(ces_responses, 0), 4) as low_effort_share,
        csat_responses < 30 as is_small_csat_sample,
        ces_responses < 30 as is_small_ces_sample,
        response_month

    from counted

)

select * from final
