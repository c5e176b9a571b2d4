with

responses as (

    select * from {{ ref('stg_surveys__responses') }}

),

invitations as (

    select * from {{ ref('stg_surveys__invitations') }}

),

identities as (

    select * from {{ ref('int_customers_resolved_across_sources') }}
    where identifier_type = 'email'

),

joined as (

    select
        responses.*,
        invitations.related_order_id,
        invitations.related_case_id,
        invitations.related_interaction_id,
        coalesce(responses.respondent_email, invitations.respondent_email) as resolved_email

    from responses
    left join invitations
        on responses.invitation_id = invitations.invitation_id

),

final as (

    select
        joined.response_id,
        joined.invitation_id,
        joined.related_order_id,
        joined.related_case_id,
        joined.related_interaction_id,
        identities.customer_key,
        joined.survey_id,
        joined.touchpoint,
        joined.resolved_email as respondent_email,
        joined.nps_category,
        joined.comment,
        joined.likelihood_to_recommend,
        joined.csat_score,
        joined.ces_score,
        joined.overall_satisfaction,
        joined.choose_again,
        joined.buy_different_products,
        joined.expand_use,
        joined.switch_to_competitor,
        joined.renew,
        -- Loyalty indices (CEM_DOMAIN.md), 0-10: the mean of the items answered, after
        -- reverse-scoring switch_to_competitor; null when no item of the index was answered.
        (
            select round(avg(item), 2)
            from (
                values
                    (joined.overall_satisfaction),
                    (joined.choose_again),
                    (joined.likelihood_to_recommend)
            ) as advocacy_items (item)
        ) as advocacy_loyalty_index,
        (
            select round(avg(item), 2)
            from (
                values
                    (joined.buy_different_products),
                    (joined.expand_use)
            ) as purchasing_items (item)
        ) as purchasing_loyalty_index,
        (
            select round(avg(item), 2)
            from (
                values
                    (10 - joined.switch_to_competitor),
                    (joined.renew)
            ) as retention_items (item)
        ) as retention_loyalty_index,
        joined.is_satisfied as is_top_2_box_csat,
        joined.is_low_effort,
        joined.has_comment,
        joined.responded_date,
        joined.sent_at,
        joined.responded_at

    from joined
    left join identities
        on joined.resolved_email = identities.identifier

)

select * from final
