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

    Incremental by invitation (no as-of date in its rows). An invitation's row depends on
    the invitation, the responses naming it, the customer its email resolves to and that
    customer's LTR answers. A build recomputes the invitations loaded, or answered, since
    its watermark (the newest load time of the invitation or its responses), and, read from
    the change log (macros/change_log.sql), those named by a response fct_survey_responses
    replaced and those keyed to a customer that response or identity resolution replaced.
    Every email resolves to a customer (an inferred one until the CRM knows it), so an
    invitation whose email moves to another customer was keyed to one the log names.
    Invitations are never removed, so only the recomputed ones are replaced
    (change_log_names_this_key=false); a rebuild of everything truncates first.
-#}

{#- the models whose change log it reads -#}
{%- set producers = ['int_customers_resolved_across_sources', 'fct_survey_responses'] %}

{#- The index on source_loaded_at answers the watermark, max(source_loaded_at), read at the
    start of every build (incremental_watermark): without it every build, nothing new
    included, scanned the 2.5M invitations at 1M customers (0.27-0.63 s, with two parallel
    workers). -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='replace_changed_keys',
        unique_key='invitation_id',
        change_log_key='invitation_id',
        change_log_skip_unchanged=true,
        change_log_producers=producers,
        change_log_names_this_key=false,
        on_schema_change='fail',
        change_log_as_of=false,
        pre_hook=["{{ wait_for_raw_publishes() }}"],
        post_hook=[
            "{{ record_change_position() }}",
            "{{ set_not_null(['invitation_id', 'survey_id', 'touchpoint', 'loyalty_category_at_sending', 'is_answered']) }}",
            "{{ enforce_accepted_values('loyalty_category_at_sending', ['promoter', 'passive', 'detractor', 'unknown']) }}",
        ],
        indexes=[
            {'columns': ['invitation_id'], 'unique': True},
            {'columns': ['customer_key']},
            {'columns': ['source_loaded_at']},
        ],
    )
}}

{%- set changes = change_log_state(producers) %}
{%- set incremental = is_incremental() and not changes.full %}

with

-- Not materialized: an incremental build reads a few rows of each through their indexes.
invitations as not materialized (

    select * from {{ ref('stg_surveys__invitations') }}

),

responses as not materialized (

    select * from {{ ref('stg_surveys__responses') }}

),

identities as not materialized (

    select * from {{ ref('int_customers_resolved_across_sources') }}
    where identifier_type = 'email'

),

ltr_answers as not materialized (

    select * from {{ ref('fct_survey_responses') }}
    where customer_key is not null
        and nps_category is not null

),

{% if incremental -%}
{%- set watermark = incremental_watermark() %}
changed_keys as materialized (

    {{ changed_keys_since_last_build(changes) | indent(4) }}

),

scope as (

    select invitation_id from invitations where loaded_at > {{ watermark }}

    union

    select invitation_id from responses where loaded_at > {{ watermark }}

    union

    -- fct_survey_responses logs the invitation of every response it replaced, too
    select cast(substr(key_value, length('invitation:') + 1) as bigint)
    from changed_keys
    where key_value like 'invitation:%'

    union

    select previous.invitation_id
    from {{ this }} as previous
    where previous.customer_key in (select key_value from changed_keys)

),

{% endif -%}

-- An invitation answered several times counts once, from its first answer. The responses
-- come from fct_survey_responses, built before this model from the same rows (one per
-- response), through its invitation index: raw's responses have none, and every build
-- with new invitations or responses scanned all of them. At 1M customers the select of a
-- one-day delta took 0.35 s that way and 0.12-0.15 s now (docs/operations/marts.md,
-- "Stop 67"). Its source_loaded_at is the later of the response's load and its
-- invitation's, and the invitation's load counts below anyway.
first_responses as (

    select
        invitation_id,
        count(*) as response_count,
        min(responded_date) as first_responded_date,
        min(responded_at) as first_responded_at,
        max(source_loaded_at) as last_loaded_at

    from {{ ref('fct_survey_responses') }}
    where invitation_id is not null
        {%- if incremental %}
        and invitation_id = any(array(select invitation_id from scope))
        {%- endif %}
    group by 1

),

invitees as (

    select
        invitations.*,
        identities.customer_key

    from invitations
    left join identities
        on invitations.respondent_email = identities.identifier
    {%- if incremental %}
    where invitations.invitation_id in (select invitation_id from scope)
    {%- endif %}

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
        first_responses.first_responded_at,
        -- the incremental watermark: the newest load of the invitation or of a response to it
        greatest(invitees.loaded_at, first_responses.last_loaded_at) as source_loaded_at

    from invitees
    left join categories_at_sending
        on invitees.invitation_id = categories_at_sending.invitation_id
    left join first_responses
        on invitees.invitation_id = first_responses.invitation_id

)

select * from final
