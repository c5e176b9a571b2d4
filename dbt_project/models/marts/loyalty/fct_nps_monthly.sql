with

responses as (

    select * from {{ ref('stg_surveys__responses') }}
    where nps_category is not null

),

counted as (

    select
        cast(date_trunc('month', responded_date) as date) as response_month,
        touchpoint,
        count(*) as responses,
        count(*) filter (where nps_category = 'promoter') as promoters,
        count(*) filter (where nps_category = 'passive') as passives,
        count(*) filter (where nps_category = 'detractor') as detractors

    from responses
    group by 1, 2

),

final as (

    select
        response_month || '|' || touchpoint as nps_monthly_id,
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
