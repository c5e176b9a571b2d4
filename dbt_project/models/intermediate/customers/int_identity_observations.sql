{#-
    Every record that names a customer, once: CRM customers, sales orders, survey
    invitations and responses, each with its email normalised (normalize_email), its sales
    account and the time it first saw the customer. Identity resolution reads this table,
    not the raw sources: its normalised emails are indexed, so a build can resolve only the
    emails and accounts whose records changed.

    Incremental on the raw load time, under the raw-publish gate like the facts: it reads
    the records loaded since its watermark, kept in ops.model_watermarks (kept_watermark;
    its rows do not carry their load time), and a record loaded again replaces its
    observation. The strategy logs the email and account identifiers of the replaced and
    the new observation (macros/change_log.sql): an order whose email changed from a to b
    touches both a and b. A CRM record also logs its customer key, for the churn gaps (a
    cancellation date lives on the CRM record).

    A sales or survey record loaded again with the same email, account and time (an order
    whose status changed) changes no identity: its observation is equal to the stored one
    and is left as it is (change_log_drop_unchanged), so identity resolution does not
    re-resolve its email and account. A CRM record loaded again is always replaced and
    logged: the churn gaps, fct_customer_churn_stored and dim_customers read its customer
    key from the log, for the CRM fields observations do not carry (a cancellation date, a
    segment).

    Records without an email or account are kept: a record whose email was removed must
    still replace, and so remove, the observation that had it.

    A new sales or survey record that cannot change how its email or account resolves is
    not logged for that identifier (change_log_skip_added, macros/change_log.sql); identity
    resolution, the only model reading those keys, then leaves it alone instead of reading
    every observation of it again. Identity resolution keeps, per email, whether sales and
    surveys have seen it and the earliest time any source did, and per account its latest
    email and earliest order: an added order or survey record of an email already seen by
    its source, no earlier than that email's first time, changes nothing of the email; an
    added order of an account, no earlier than its first, that names no email or the
    account's latest one, changes nothing of the account. A CRM record loaded again for a
    field observations do not carry (its segment) is replaced and logged by customer key,
    but not by email: its observation is the same. A new CRM record, a record replaced with
    other values (its old ones may be what identity resolution kept), and an identifier
    identity resolution has no row of are always logged.
-#}

{#- Why the load time is not a column: stored, it made every record loaded again unchanged
    an update of its row for the new load time, and of the load time's index. After three
    days' delta at 1M customers that update (23k rows) took 1.29-2.38 s, and this model's
    writes 3.43-5.07 s in all, against 2.66-3.68 s now, at the head of the build, where the
    other thread waits (docs/operations/marts.md, "Stop 63"). -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete_insert_logging_keys',
        unique_key='observation_id',
        change_log_key=['email_identifier_id', 'account_identifier_id', 'crm_customer_key'],
        change_log_drop_unchanged={'where': "fresh.source <> 'crm'"},
        change_log_skip_added={
            'reader': 'int_customers_resolved_across_sources',
            'reader_key': 'customer_identifier_id',
            'keys': {
                'email_identifier_id': "fresh.source <> 'crm' and (case fresh.source when 'sales' then reader.is_seen_in_sales else reader.is_seen_in_surveys end) and (fresh.seen_at is null or fresh.seen_at >= reader.first_seen_at)",
                'account_identifier_id': "(fresh.customer_email is null or fresh.customer_email = reader.customer_email) and (fresh.seen_at is null or fresh.seen_at >= reader.first_seen_at)",
            },
        },
        on_schema_change='fail',
        pre_hook=["{{ wait_for_raw_publishes() }}", "{{ log_rebuilt_in_full() }}"],
        post_hook=[
            "{{ set_not_null('observation_id') }}",
            "{{ enforce_accepted_values('source', ['crm', 'sales', 'surveys']) }}",
            "{{ keep_watermark([ref('stg_crm__customers'), ref('stg_sales__orders'), ref('stg_surveys__invitations'), ref('stg_surveys__responses')]) }}",
        ],
        indexes=[
            {'columns': ['observation_id'], 'unique': True},
            {'columns': ['customer_email']},
            {'columns': ['sales_account_id']},
        ],
    )
}}

{%- set watermark = kept_watermark() %}

with

crm_customers as (

    select * from {{ ref('stg_crm__customers') }}
    {%- if is_incremental() %}
    where loaded_at > {{ watermark }}
    {%- endif %}

),

orders as (

    select * from {{ ref('stg_sales__orders') }}
    {%- if is_incremental() %}
    where loaded_at > {{ watermark }}
    {%- endif %}

),

invitations as (

    select * from {{ ref('stg_surveys__invitations') }}
    {%- if is_incremental() %}
    where loaded_at > {{ watermark }}
    {%- endif %}

),

responses as (

    select * from {{ ref('stg_surveys__responses') }}
    {%- if is_incremental() %}
    where loaded_at > {{ watermark }}
    {%- endif %}

),

observations as (

    select
        'crm_customer:' || customer_id as observation_id,
        'crm' as source,
        {{ normalize_email('customer_email') }} as customer_email,
        cast(null as text) as sales_account_id,
        customer_id,
        is_archived,
        created_at,
        cast(null as bigint) as order_id,
        created_at as seen_at

    from crm_customers

    union all

    select
        'order:' || order_id as observation_id,
        'sales' as source,
        {{ normalize_email('customer_email') }} as customer_email,
        sales_account_id,
        cast(null as bigint) as customer_id,
        cast(null as boolean) as is_archived,
        cast(null as timestamptz) as created_at,
        order_id,
        ordered_at as seen_at

    from orders

    union all

    select
        'invitation:' || invitation_id as observation_id,
        'surveys' as source,
        {{ normalize_email('respondent_email') }} as customer_email,
        cast(null as text) as sales_account_id,
        cast(null as bigint) as customer_id,
        cast(null as boolean) as is_archived,
        cast(null as timestamptz) as created_at,
        cast(null as bigint) as order_id,
        sent_at as seen_at

    from invitations

    union all

    select
        'response:' || response_id as observation_id,
        'surveys' as source,
        {{ normalize_email('respondent_email') }} as customer_email,
        cast(null as text) as sales_account_id,
        cast(null as bigint) as customer_id,
        cast(null as boolean) as is_archived,
        cast(null as timestamptz) as created_at,
        cast(null as bigint) as order_id,
        coalesce(sent_at, responded_at) as seen_at

    from responses

),

final as (

    select
        observation_id,
        source,
        customer_email,
        sales_account_id,
        customer_id,
        is_archived,
        created_at,
        order_id,
        seen_at,
        'email:' || customer_email as email_identifier_id,
        'sales_account:' || sales_account_id as account_identifier_id,
        cast(customer_id as text) as crm_customer_key

    from observations

)

-- identity resolution reads an email's observations together, and an account's (which
-- share their email)
select * from final
{{ stored_in_order_of(['customer_email']) }}
