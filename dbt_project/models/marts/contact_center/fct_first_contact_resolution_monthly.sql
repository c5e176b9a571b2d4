{#-
    First-contact resolution per month the case was opened (UTC) x case channel (the channel
    of its first contact). FCR (CEM_DOMAIN.md, stg_crm__support_cases): resolved in one
    contact and not reopened within 7 days. fcr_rate = FCR cases / cases opened; cases still
    open (open_cases) may yet change it, as may a case resolved less than 7 days before the
    latest load.
-#}

with

support_cases as (

    select * from {{ ref('stg_crm__support_cases') }}

),

counted as (

    select
        {{ month_start('opened_date') }} as opened_month,
        coalesce(channel, 'unknown') as channel,
        count(*) as cases,
        count(*) filter (where is_resolved) as resolved_cases,
        count(*) filter (where is_first_contact_resolution) as first_contact_resolved_cases,
        count(*) filter (where is_reopened) as reopened_cases,
        count(*) filter (where case_status in ('open', 'reopened')) as open_cases,
        avg(contact_count) as contacts_per_case_unrounded

    from support_cases
    group by 1, 2

),

final as (

    select
        opened_month || '|' || channel as first_contact_resolution_monthly_id,
        channel,
        cases,
        resolved_cases,
        first_contact_resolved_cases,
        reopened_cases,
        open_cases,
        round(first_contact_resolved_cases::numeric / nullif(cases, 0), 4) as fcr_rate,
        round(resolved_cases::numeric / nullif(cases, 0), 4) as resolution_rate,
        round(contacts_per_case_unrounded, 2) as contacts_per_case,
        opened_month

    from counted

)

select * from final
