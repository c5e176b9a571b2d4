{#-
    Contact-center contacts per month the contact started (UTC) x contact channel: volume,
    handle time, and post-contact CSAT. Post-contact CSAT is the CSAT of the post-support
    survey linked to the contact in fct_support_interactions (the invitation names the
    contact; a survey naming only its case counts for the case's last contact), also split by
    whether the contact's case was a first-contact resolution.

    The counting is int_support_contacts_counted_by_month's, which recomputes only the
    months whose contacts changed; this mart names and rounds its few hundred cells.
-#}

with

counted as (

    select * from {{ ref('int_support_contacts_counted_by_month') }}

),

final as (

    select
        started_month || '|' || channel as support_contacts_monthly_id,
        channel,
        contacts,
        inbound_contacts,
        cases_contacted,
        timed_contacts,
        total_handle_seconds,
        round(mean_handle_seconds_unrounded, 1) as mean_handle_seconds,
        round(cast(median_handle_seconds_unrounded as numeric), 1) as median_handle_seconds,
        post_contact_csat_responses,
        post_contact_satisfied_responses,
        round(mean_post_contact_csat_unrounded, 2) as mean_post_contact_csat,
        round(post_contact_satisfied_responses::numeric / nullif(post_contact_csat_responses, 0), 4)
            as post_contact_top_2_box_csat_share,
        fcr_csat_responses,
        round(fcr_csat_unrounded, 2) as mean_post_contact_csat_first_contact_resolved,
        not_fcr_csat_responses,
        round(not_fcr_csat_unrounded, 2) as mean_post_contact_csat_not_first_contact_resolved,
        started_month

    from counted

)

select * from final
