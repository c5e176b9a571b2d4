{#-
    NPS per calendar month (UTC) x customer segment x touchpoint, from every response with a
    likelihood-to-recommend answer. The segment is the customer's current CRM segment
    (dim_customers); a response from a customer the CRM does not know (inferred) or without
    a resolvable email counts under segment 'unknown', so no response is dropped.
-#}

with

survey_responses as (

    select * from {{ ref('fct_survey_responses') }}
    where likelihood_to_recommend is not null

),

customers as (

    select * from {{ ref('dim_customers') }}

),

categorised as (

    select
        {{ month_start('survey_responses.responded_date') }} as response_month,
        coalesce(customers.segment, 'unknown') as segment,
        survey_responses.touchpoint,
        {{ nps_category('survey_responses.likelihood_to_recommend') }} as nps_category

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
        count(*) filter (where nps_category = 'promoter') as promoters,
        count(*) filter (where nps_category = 'passive') as passives,
        count(*) filter (where nps_category = 'detractor') as detractors

    from categorised
    group by 1, 2, 3

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
