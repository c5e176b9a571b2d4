{#-
    Incremental (delete+insert on interaction_id), re-derived a whole case at a time: contact
    numbers and the last contact of a case depend on all of the case's contacts. Inputs and
    how a change reaches here:

    * interactions loaded after the watermark -> their cases;
    * support_cases loaded after it -> those cases;
    * post-support responses (fct_survey_responses, already up to date in this build) loaded
      after it -> the case of the contact they name, the case they name, and the case of the
      contact they were attributed to before;
    * customer_key is the CRM customer_id: no identity resolution involved.
    Indexed by customer_key too: int_support_cases_followed_up finds the cases of the
    customers in its scope through it.
    Contacts without a case are numbered together (one partition), so they are re-derived
    together whenever one of them changes.

    Its strategy, delete_insert_logging_keys, logs the contacts it writes (and their
    customers), so that after a publication the retired generation in marts_build is
    brought up to date by key instead of re-deriving the last delta again
    (cem_warehouse.transform.generations). With each contact's customer it logs the month
    the contact started in (macros/contact_month_keys.sql): the months that
    int_support_contacts_counted_by_month recomputes.
-#}

{#- started_date is indexed for int_support_cases_followed_up, which recomputes the cases
    with a contact dated in the days the as-of date moved over: found without a scan. -#}
{{
    config(
        materialized='incremental',
        unique_key='interaction_id',
        incremental_strategy='delete_insert_logging_keys',
        change_log_key=['customer_key', contact_month_key('started_date')],
        on_schema_change='fail',
        pre_hook=["set local work_mem = '256MB'", "{{ log_rebuilt_in_full() }}"],
        post_hook=["{{ keep_row_count() }}", "{{ analyze_when_stale() }}"],
        indexes=[
            {'columns': ['interaction_id'], 'unique': True},
            {'columns': ['case_id']},
            {'columns': ['post_contact_response_id']},
            {'columns': ['source_loaded_at']},
            {'columns': ['customer_key']},
            {'columns': ['started_date']},
        ],
    )
}}

with

-- Import CTEs are `not materialized`: incremental builds read them several times, and a
-- materialized CTE would copy a whole table and lose its indexes.
interactions as not materialized (

    select * from {{ ref('stg_crm__interactions') }}

),

support_cases as not materialized (

    select * from {{ ref('stg_crm__support_cases') }}

),

survey_responses as not materialized (

    select * from {{ ref('fct_survey_responses') }}
    where touchpoint = 'post_support'

),

{% if is_incremental() %}
{%- set watermark = incremental_watermark() %}
{#- the cases in scope as an array, which PostgreSQL looks up by index, and whether the
    contacts without a case (one partition) are in scope: each read below -#}
{%- set scope_case_ids = 'array(select case_id from scope_cases where case_id is not null)' %}
{%- set caseless_in_scope = 'exists (select from scope_cases where case_id is null)' %}

changed_responses as (

    select
        response_id,
        related_case_id,
        related_interaction_id

    from survey_responses
    where source_loaded_at > {{ watermark }}

),

-- read once: the cases in scope and the contacts in scope both start from them
loaded_interactions as materialized (

    select interaction_id, case_id from interactions where loaded_at > {{ watermark }}

),

scope_cases as materialized (

    select case_id from loaded_interactions

    union

    select case_id from support_cases where loaded_at > {{ watermark }}

    union

    select related_case_id from changed_responses where related_case_id is not null

    union

    select interactions.case_id
    from interactions
    inner join changed_responses
        on interactions.interaction_id = changed_responses.related_interaction_id

    union

    select previous.case_id
    from {{ this }} as previous
    inner join changed_responses
        on previous.post_contact_response_id = changed_responses.response_id

),

-- The contacts of the cases in scope, found without a scan of raw's contacts, which have no
-- index on their case: every contact loaded up to the watermark is stored with the case it
-- had then, and one whose case changed since was loaded again, so the stored contacts of
-- those cases (through this table's case index; the contacts without a case are one
-- partition) and the contacts loaded since hold them all. Read by raw's primary key, then
-- kept by their case now. Before, the cases were matched against every raw contact, and
-- every case and post-contact survey was hashed: at 1M customers the select of a one-day
-- delta took 0.85-0.87 s that way and 0.04 s now (docs/operations/marts.md, "Stop 67").
interactions_in_scope as (

    select interactions.*
    from interactions
    where interactions.interaction_id = any(array(
        select previous.interaction_id
        from {{ this }} as previous
        where previous.case_id = any({{ scope_case_ids }})

        union

        select previous.interaction_id
        from {{ this }} as previous
        where previous.case_id is null
            and {{ caseless_in_scope }}

        union

        select interaction_id from loaded_interactions
    ))
        and (
            interactions.case_id = any({{ scope_case_ids }})
            or (interactions.case_id is null and {{ caseless_in_scope }})
        )

),

-- the responses that can follow a contact in scope: naming it, or naming only its case
responses_in_scope as (

    select * from survey_responses
    where related_interaction_id = any(array(select interaction_id from interactions_in_scope))

    union

    select * from survey_responses
    where related_interaction_id is null
        and related_case_id = any({{ scope_case_ids }})

),

{% endif %}

numbered_interactions as (

    select
        interactions.*,
        row_number() over (
            partition by interactions.case_id
            order by interactions.started_at asc, interactions.interaction_id asc
        ) as contact_number,
        row_number() over (
            partition by interactions.case_id
            order by interactions.started_at desc, interactions.interaction_id desc
        ) as contact_number_from_last

    {% if is_incremental() -%}
    from interactions_in_scope as interactions
    {%- else -%}
    from interactions
    {%- endif %}

),

-- A post-support survey names the contact it follows (related_interaction_id); one that
-- names only its case is attributed to the case's last contact. The latest response wins.
post_contact_responses as (

    select distinct on (coalesce(survey_responses.related_interaction_id, last_contacts.interaction_id))
        coalesce(survey_responses.related_interaction_id, last_contacts.interaction_id) as interaction_id,
        survey_responses.response_id,
        survey_responses.csat_score,
        survey_responses.is_top_2_box_csat,
        survey_responses.responded_at,
        survey_responses.source_loaded_at

    {% if is_incremental() -%}
    from responses_in_scope as survey_responses
    {%- else -%}
    from survey_responses
    {%- endif %}
    left join numbered_interactions as last_contacts
        on survey_responses.related_case_id = last_contacts.case_id
        and last_contacts.contact_number_from_last = 1
    where coalesce(survey_responses.related_interaction_id, last_contacts.interaction_id) is not null
    order by
        coalesce(survey_responses.related_interaction_id, last_contacts.interaction_id) asc,
        survey_responses.responded_at desc,
        survey_responses.response_id desc

),

final as (

    select
        numbered_interactions.interaction_id,
        numbered_interactions.case_id,
        numbered_interactions.customer_id,
        numbered_interactions.agent_id,
        post_contact_responses.response_id as post_contact_response_id,
        cast(numbered_interactions.customer_id as text) as customer_key,
        numbered_interactions.channel,
        numbered_interactions.direction,
        support_cases.channel as case_channel,
        support_cases.topic as case_topic,
        support_cases.case_status,
        numbered_interactions.contact_number,
        numbered_interactions.handle_seconds,
        post_contact_responses.csat_score as post_contact_csat_score,
        numbered_interactions.is_inbound,
        numbered_interactions.contact_number_from_last = 1 as is_last_contact_of_case,
        coalesce(support_cases.is_resolved, false) as is_case_resolved,
        coalesce(support_cases.is_reopened, false) as is_case_reopened,
        coalesce(support_cases.is_first_contact_resolution, false) as is_first_contact_resolution,
        post_contact_responses.response_id is not null as has_post_contact_survey,
        post_contact_responses.is_top_2_box_csat as is_post_contact_satisfied,
        numbered_interactions.started_date,
        numbered_interactions.started_at,
        numbered_interactions.ended_at,
        post_contact_responses.responded_at as post_contact_responded_at,
        -- the watermark of incremental builds
        greatest(
            numbered_interactions.loaded_at,
            support_cases.loaded_at,
            post_contact_responses.source_loaded_at
        ) as source_loaded_at

    from numbered_interactions
    left join support_cases
        on numbered_interactions.case_id = support_cases.case_id
        {%- if is_incremental() %}
        -- by raw's primary key, not a hash of every case
        and support_cases.case_id = any({{ scope_case_ids }})
        {%- endif %}
    left join post_contact_responses
        on numbered_interactions.interaction_id = post_contact_responses.interaction_id

)

select * from final
