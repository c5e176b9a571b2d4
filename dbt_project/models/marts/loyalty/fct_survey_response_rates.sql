{#-
    Response rate = responses / invitations sent (CEM_DOMAIN.md), per month of sending (UTC)
    x survey x touchpoint, over all loaded data (no as-of cut). An invitation counts once as
    answered however many responses it got (a re-submitted survey must not push the rate
    above 1), and in the month it was SENT, so the latest months keep rising while their
    invitations are still being answered. A response that names no known invitation counts
    in no rate. Invitations come from int_invitations_categorised_at_sending, the same rows
    as the by-loyalty-category marts, so the totals agree; counted per cell by
    int_invitations_counted_by_sent_month, which their writes keep (since stop 54).
-#}

with

-- invitations sent and answered per month of sending, survey and touchpoint (the cells also
-- split by loyalty category at sending, added up here), kept by the invitations' writes
counted as (

    select
        sent_month,
        survey_id,
        touchpoint,
        cast(sum(invitations) as bigint) as invitations,
        cast(sum(answered_invitations) as bigint) as responses

    from {{ ref('int_invitations_counted_by_sent_month') }}
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
