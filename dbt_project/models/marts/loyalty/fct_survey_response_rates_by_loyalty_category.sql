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

invitations as (

    select * from {{ ref('int_invitations_categorised_at_sending') }}

),

counted as (

    select
        loyalty_category_at_sending as loyalty_category,
        touchpoint,
        count(*) as invitations,
        count(*) filter (where is_answered) as responses

    from invitations
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
