{#-
    Contacts counted per month the contact started (UTC) x contact channel, unrounded: what
    fct_support_contacts_monthly reports, rounded. Post-contact CSAT is that of the
    post-support survey fct_support_interactions links to the contact, also split by whether
    the contact's case was a first-contact resolution.

    Incremental by month. A median and a count of distinct cases cannot be kept by adding
    and taking away rows, so a build recomputes whole months: those of every contact
    fct_support_interactions replaced or wrote since this model's last build, which it logs
    as month keys beside the contacts' customers (macros/contact_month_keys.sql). A month
    left with no contact of a channel loses its cell: the strategy deletes every cell of the
    months in scope and inserts what the recount finds. At 1M customers the mart grouped all
    982k contacts of 25 months on every build (1.25-2.17 s in stop 75's run A,
    docs/operations/marts.md); a one-day delta touches the last month or two. Nothing here
    moves with the as-of date (change_log_as_of=false).
-#}

{#- the models whose change log it reads -#}
{%- set producers = ['fct_support_interactions'] %}

{{
    config(
        materialized='incremental',
        incremental_strategy='replace_changed_keys',
        unique_key='support_contacts_cell_id',
        change_log_key='month_key',
        change_log_producers=producers,
        change_log_key_patterns={'fct_support_interactions': contact_month_key_pattern()},
        change_log_as_of=false,
        on_schema_change='fail',
        post_hook=[
            "{{ record_change_position() }}",
            "{{ set_not_null(['support_contacts_cell_id', 'month_key', 'channel']) }}",
        ],
        indexes=[
            {'columns': ['support_contacts_cell_id'], 'unique': True},
            {'columns': ['month_key']},
        ],
    )
}}

{%- set changes = change_log_state(producers) %}

with

support_interactions as not materialized (

    select * from {{ ref('fct_support_interactions') }}

),

{% if not changes.full -%}
months_in_scope as materialized (

    select distinct key_value
    from (
        {{ changed_keys_since_last_build(changes) | indent(8) }}
    ) as logged

),

-- Each month's contacts through the index on started_date, a range per month.
contacts_in_scope as (

    select contacts.*
    from months_in_scope
    inner join support_interactions as contacts
        on contacts.started_date >= {{ contact_month_of_key('months_in_scope.key_value') }}
        and contacts.started_date < cast({{ contact_month_of_key('months_in_scope.key_value') }} + interval '1 month' as date)

    union all

    select *
    from support_interactions
    where started_date is null
        and exists (select from months_in_scope where key_value = 'month=none')

),

{% endif -%}
counted as (

    select
        {{ month_start('started_date') }} as started_month,
        coalesce(channel, 'unknown') as channel,
        count(*) as contacts,
        count(*) filter (where is_inbound) as inbound_contacts,
        count(distinct case_id) as cases_contacted,
        count(handle_seconds) as timed_contacts,
        cast(sum(handle_seconds) as bigint) as total_handle_seconds,
        avg(handle_seconds) as mean_handle_seconds_unrounded,
        percentile_cont(0.5) within group (order by handle_seconds) as median_handle_seconds_unrounded,
        count(post_contact_csat_score) as post_contact_csat_responses,
        count(*) filter (where post_contact_csat_score >= 4) as post_contact_satisfied_responses,
        avg(post_contact_csat_score) as mean_post_contact_csat_unrounded,
        count(post_contact_csat_score) filter (where is_first_contact_resolution) as fcr_csat_responses,
        avg(post_contact_csat_score) filter (where is_first_contact_resolution) as fcr_csat_unrounded,
        count(post_contact_csat_score) filter (where not is_first_contact_resolution) as not_fcr_csat_responses,
        avg(post_contact_csat_score) filter (where not is_first_contact_resolution) as not_fcr_csat_unrounded

    from {{ 'support_interactions' if changes.full else 'contacts_in_scope' }}
    group by 1, 2

),

-- The month key follows from the month (its start is its own month's start): worked out
-- once per cell, not grouped by for every contact.
keyed as (

    select
        {{ contact_month_key('started_month') }} as month_key,
        *

    from counted

),

final as (

    select
        month_key || '|' || channel as support_contacts_cell_id,
        *

    from keyed

)

select * from final
