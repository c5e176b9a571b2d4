with

source as (

    select * from {{ source('surveys', 'survey_responses') }}

),

renamed as (

    select
        response_id,
        invitation_id,
        survey_id,
        lower(trim(respondent_email)) as respondent_email,
        touchpoint,
        ltr as likelihood_to_recommend,
        csat as csat_score,
        ces as ces_score,
        {{ nps_category('ltr') }} as nps_category,
        csat >= 4 as is_satisfied,
        responded_at,
        cast(responded_at at time zone 'UTC' as date) as responded_date

    from source

)

select * from renamed
