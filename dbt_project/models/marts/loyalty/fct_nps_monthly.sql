{#-
    NPS per calendar month (UTC) x customer segment x touchpoint, from every response with a
    likelihood-to-recommend answer. The segment is the customer's current CRM segment
    (dim_customers); a response from a customer the CRM does not know (inferred) or without
    a resolvable email counts under segment 'unknown', so no response is dropped. Counted
    in int_survey_responses_counted_by_month, with the other monthly survey marts.
-#}

with

-- the cells with at least one likelihood-to-recommend answer
counted as (

    select
        response_month,
        segment,
        touchpoint,
        ltr_responses as responses,
        promoters,
        passives,
        detractors

    from {{ ref('int_survey_responses_counted_by_month') }}
    where ltr_responses > 0

),

final as (

    select
        response_month || '|' || segment || '|' || touchpoint as nps_monthly_id,
        segment,
        touchpoint,
        responses,
        promoters,
        passives,
        detractors,
        {{ nps_score('promoters', 'detractors', 'responses') }} as nps,
        {{ nps_margin_of_error('promoters', 'detractors', 'responses') }} as nps_margin_of_error,
        responses < 30 as is_small_sample,
        response_month

    from counted

)

select * from final
