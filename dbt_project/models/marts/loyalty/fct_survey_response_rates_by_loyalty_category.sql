{#-
    Do advocates give more feedback? Response rate = responses / invitations sent, by the
    invitee's loyalty category WHEN THE INVITATION WAS SENT x touchpoint, over all
    invitations.

    The category is the dim_customers rule (the NPS category of the customer's last LTR
    answer) applied to the answers given before sent_at. Taking the current category
    instead would bias the rate: a customer has a category only because they answered, so
    rarely-answering detractors would show only the invitations they did answer. Invitees
    with no earlier LTR answer (first invitation, never answered, no resolvable customer)
    form the 'unknown' row, so every invitation counts once.
-#}

with

invitations as (

    select * from {{ ref('stg_surveys__invitations') }}

),

responses as (

    select * from {{ ref('stg_surveys__responses') }}

),

identities as (

    select * from {{ ref('int_customers_resolved_across_sources') }}
    where identifier_type = 'email'

),

survey_responses as (

    select * from {{ ref('fct_survey_responses') }}
    where customer_key is not null
        and nps_category is not null

),

answered_invitations as (

    select distinct invitation_id

    from responses
    where invitation_id is not null

),

invitees as (

    select
        invitations.invitation_id,
        identities.customer_key,
        coalesce(invitations.touchpoint, 'unknown') as touchpoint,
        answered_invitations.invitation_id is not null as is_answered,
        invitations.sent_at

    from invitations
    left join answered_invitations
        on invitations.invitation_id = answered_invitations.invitation_id
    left join identities
        on invitations.respondent_email = identities.identifier

),

-- The last LTR answer the invitee gave before the invitation was sent.
categories_at_sending as (

    select distinct on (invitees.invitation_id)
        invitees.invitation_id,
        survey_responses.nps_category as loyalty_category

    from invitees
    inner join survey_responses
        on invitees.customer_key = survey_responses.customer_key
        and survey_responses.responded_at < invitees.sent_at
    order by
        invitees.invitation_id asc,
        survey_responses.responded_at desc,
        survey_responses.response_id desc

),

counted as (

    select
        coalesce(categories_at_sending.loyalty_category, 'unknown') as loyalty_category,
        invitees.touchpoint,
        count(*) as invitations,
        count(*) filter (where invitees.is_answered) as responses

    from invitees
    left join categories_at_sending
        on invitees.invitation_id = categories_at_sending.invitation_id
    group by 1, 2

),

final as (

    select
        loyalty_category || '|' || touchpoint as response_rate_by_loyalty_category_id,
        loyalty_category,
        touchpoint,
        invitations,
        responses,
        round(responses::numeric / nullif(invitations, 0), 4) as response_rate

    from counted

)

select * from final
