{#-
    Incremental (delete+insert on response_id). Inputs and how a change reaches here:

    * responses loaded after the watermark -> those responses;
    * invitations loaded after it (related order / case / contact, email) -> their responses;
    * identity (customer_key by respondent email): a key changes only when a CRM customer with
      that email is loaded, so CRM customers loaded after the watermark -> the responses with
      their current email and those keyed to them before (an email that moved away).

    Its strategy logs the customer key of every response it replaces and writes, so that
    dim_customers recomputes only those customers (macros/change_log.sql), and its
    invitation as 'invitation:<id>' for int_invitations_categorised_at_sending (prefixed:
    invitation ids and CRM customer keys are both numbers, and must not name each other).

    Indexed by invitation, and by the case and the contact a post-support survey names: this
    model and int_invitations_categorised_at_sending find an invitation's responses, and
    fct_support_interactions the surveys that follow its contacts, without a scan.
-#}

{{
    config(
        materialized='incremental',
        unique_key='response_id',
        incremental_strategy='delete_insert_logging_keys',
        change_log_key=['customer_key', "'invitation:' || invitation_id"],
        on_schema_change='fail',
        pre_hook=["set local work_mem = '256MB'", "{{ log_rebuilt_in_full() }}"],
        post_hook=[
            "{{ enforce_between([{'column': 'likelihood_to_recommend', 'min_value': 0, 'max_value': 10}, {'column': 'csat_score', 'min_value': 1, 'max_value': 5}, {'column': 'ces_score', 'min_value': 1, 'max_value': 7}, {'column': 'advocacy_loyalty_index', 'min_value': 0, 'max_value': 10}, {'column': 'purchasing_loyalty_index', 'min_value': 0, 'max_value': 10}, {'column': 'retention_loyalty_index', 'min_value': 0, 'max_value': 10}]) }}",
            "{{ enforce_accepted_values('nps_category', ['promoter', 'passive', 'detractor']) }}",
            "{{ analyze_when_stale() }}",
            "{{ keep_row_count() }}",
        ],
        indexes=[
            {'columns': ['response_id'], 'unique': True},
            {'columns': ['customer_key']},
            {'columns': ['respondent_email']},
            {'columns': ['source_loaded_at']},
            {'columns': ['invitation_id']},
            {'columns': ['related_case_id']},
            {'columns': ['related_interaction_id']},
        ],
    )
}}

-- depends_on: {{ ref('stg_crm__customers') }}

with

-- Import CTEs are `not materialized`: incremental builds read them several times, and a
-- materialized CTE would copy a whole table and lose its indexes.
responses as not materialized (

    select * from {{ ref('stg_surveys__responses') }}

),

invitations as not materialized (

    select * from {{ ref('stg_surveys__invitations') }}

),

identities as not materialized (

    select * from {{ ref('int_customers_resolved_across_sources') }}
    where identifier_type = 'email'

),

{% if is_incremental() %}
{%- set watermark = incremental_watermark() %}

touched_crm_customers as (

    select
        cast(customer_id as text) as customer_key,
        customer_email

    from {{ ref('stg_crm__customers') }}
    where loaded_at > {{ watermark }}

),

scope as (

    select response_id from responses where loaded_at > {{ watermark }}

    union

    -- the stored responses to them, through the invitation's index: raw's responses have
    -- none, and joining them to the new invitations scanned all of them whenever any came.
    -- At 1M customers the select of a one-day delta took 0.34-0.36 s that way and 0.15 s
    -- now (docs/operations/marts.md, "Stop 67"). Every response loaded up to the watermark
    -- is stored, so no other response can name them.
    select previous.response_id
    from {{ this }} as previous
    where previous.invitation_id = any(array(
        select invitation_id from invitations where loaded_at > {{ watermark }}
    ))

    union

    select previous.response_id
    from {{ this }} as previous
    where previous.respondent_email = any(array(select customer_email from touched_crm_customers))

    union

    select previous.response_id
    from {{ this }} as previous
    where previous.customer_key = any(array(select customer_key from touched_crm_customers))

),

{% endif %}

joined as (

    select
        responses.*,
        invitations.related_order_id,
        invitations.related_case_id,
        invitations.related_interaction_id,
        coalesce(responses.respondent_email, invitations.respondent_email) as resolved_email,
        greatest(responses.loaded_at, invitations.loaded_at) as source_loaded_at

    from responses
    left join invitations
        on responses.invitation_id = invitations.invitation_id
    {% if is_incremental() -%}
    -- an array, read by raw's primary key whatever the planner guesses the scope holds: as
    -- `in (select ...)`, 8.7k responses guessed at 65k after raw was analyzed hashed a scan
    -- of all of raw's responses (docs/operations/marts.md, "Stop 53")
    where responses.response_id = any(array(select response_id from scope))
    {% endif %}

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
        joined.responded_at,
        -- the watermark of incremental builds
        joined.source_loaded_at

    from joined
    left join identities
        on joined.resolved_email = identities.identifier

)

select * from final
