{#-
    Do advocates give more feedback? Response rate = responses / invitations sent, by the
    invitee's loyalty category WHEN THE INVITATION WAS SENT x touchpoint, over all loaded
    invitations and responses (no as-of cut, like the other loyalty marts).

    The category at sending is defined once, in int_invitations_categorised_at_sending (the
    dim_customers rule applied to the answers given before sent_at; 'unknown' without one),
    and fct_advocacy_by_loyalty_category uses the same rows: summed over touchpoints, this
    mart's rates equal its response_rate whenever its as-of date is on or after the latest
    invitation and response. Taking the current category instead would bias the rate: a
    customer has a category only because they answered.
-#}

with

-- invitations sent and answered per loyalty category at sending and touchpoint: the cells
-- kept by the invitations' writes, added up over months and surveys
counted as (

    select
        loyalty_category_at_sending as loyalty_category,
        touchpoint,
        cast(sum(invitations) as bigint) as invitations,
        cast(sum(answered_invitations) as bigint) as responses

    from {{ ref('int_invitations_counted_by_sent_month') }}
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
