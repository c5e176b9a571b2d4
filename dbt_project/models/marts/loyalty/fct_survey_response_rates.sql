{#-
    Response rate = responses / invitations sent (CEM_DOMAIN.md), per month of sending (UTC)
    x survey x touchpoint. An invitation counts once as answered however many responses it
    got (a re-submitted survey must not push the rate above 1), and in the month it was SENT,
    so the latest months keep rising while their invitations are still being answered. A
    response that names no known invitation counts in no rate.
-#}

with

invitations as (

    select * from {{ ref('stg_surveys__invitations') }}

),

responses as (

    select * from {{ ref('stg_surveys__responses') }}

),

answered_invitations as (

    select distinct invitation_id

    from responses
    where invitation_id is not null

),

flagged as (

    select
        cast(date_trunc('month', invitations.sent_date) as date) as sent_month,
        coalesce(invitations.survey_id, 'unknown') as survey_id,
        coalesce(invitations.touchpoint, 'unknown') as touchpoint,
        answered_invitations.invitation_id is not null as is_answered

    from invitations
    left join answered_invitations
        on invitations.invitation_id = answered_invitations.invitation_id

),

counted as (

    select
        sent_month,
        survey_id,
        touchpoint,
        count(*) as invitations,
        count(*) filter (where is_answered) as responses

    from flagged
    group by 1, 2, 3

),

final as (

    select
        sent_month || '|' || survey_id || '|' || touchpoint as survey_response_rate_id,
        survey_id,
        touchpoint,
        invitations,
        responses,
        round(responses::numeric / nullif(invitations, 0), 4) as response_rate,
        sent_month

    from counted

)

select * from final
