{#-
    CSAT and customer effort (CES) per calendar month (UTC) x customer segment x touchpoint.
    Same cells and segment rule as fct_nps_monthly ('unknown' for customers the CRM does not
    know); each measure has its own n, since CES is not asked on the relationship survey.
-#}

with

counted as (

    select * from {{ ref('int_survey_responses_counted_by_month') }}

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
