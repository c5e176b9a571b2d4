{#-
    One row per survey invitation with the invitee's loyalty category WHEN IT WAS SENT, and
    when it was first answered: the one definition behind every "response rate by loyalty
    category" (fct_survey_response_rates_by_loyalty_category, fct_advocacy_by_loyalty_category)
    and behind fct_survey_response_rates.

    The category at sending is dim_customers' rule (the NPS category of the customer's last
    LTR answer, latest responded_at, then highest response_id) applied to the answers given
    strictly before sent_at. Not the current category: a customer has one only because they
    answered, so grouping invitations by it makes the answered ones pick their own group.
    An invitee without an earlier LTR answer, or whose email resolves to no customer, is
    'unknown', so every invitation has a category.

    All loaded data: the marts cut at an as-of date filter on sent_date and
    first_responded_date (a category at sending only uses answers before sent_at, so it
    never looks past the cut).
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

ltr_answers as (

    select * from {{ ref('fct_survey_responses') }}
    where customer_key is not null
        and nps_category is not null

),

-- An invitation answered several times counts once, from its first answer.
first_responses as (

    select
        invitation_id,
        count(*) as response_count,
        min(responded_date) as first_responded_date,
        min(responded_at) as first_responded_at

    from responses
    where invitation_id is not null
    group by 1

),

invitees as (

    select
        invitations.*,
        identities.customer_key

    from invitations
    left join identities
        on invitations.respondent_email = identities.identifier

),

-- The last LTR answer the invitee gave before the invitation was sent.
categories_at_sending as (

    select distinct on (invitees.invitation_id)
        invitees.invitation_id,
        ltr_answers.nps_category as loyalty_category

    from invitees
    inner join ltr_answers
        on invitees.customer_key = ltr_answers.customer_key
        and ltr_answers.responded_at < invitees.sent_at
    order by
        invitees.invitation_id asc,
        ltr_answers.responded_at desc,
        ltr_answers.response_id desc

),

final as (

    select
        invitees.invitation_id,
        invitees.customer_key,
        coalesce(invitees.survey_id, 'unknown') as survey_id,
        coalesce(invitees.touchpoint, 'unknown') as touchpoint,
        coalesce(categories_at_sending.loyalty_category, 'unknown') as loyalty_category_at_sending,
        coalesce(first_responses.response_count, 0) as response_count,
        first_responses.invitation_id is not null as is_answered,
        invitees.sent_date,
        first_responses.first_responded_date,
        invitees.sent_at,
        first_responses.first_responded_at

    from invitees
    left join categories_at_sending
        on invitees.invitation_id = categories_at_sending.invitation_id
    left join first_responses
        on invitees.invitation_id = first_responses.invitation_id

)

select * from final
