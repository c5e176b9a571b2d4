{#-
    Identity resolution: every identifier any source knows a customer by -> ONE customer_key.

    * email (CRM customers, sales orders, survey invitations and responses), normalised:
      the CRM customer_id (as text) when a CRM customer has that email, otherwise an inferred
      key 'inferred-' || md5(email), stable across rebuilds.
    * sales account (sales_account_id on orders): the key of the account's latest non-null
      order email, so an order typed without an email still finds its customer; an account
      that never gave an email gets 'inferred-' || md5('sales_account:' || sales_account_id).

    Two CRM customers with the same email (a merge not yet archived): the email goes to the
    non-archived one, then the earliest created, then the lowest customer_id. The other CRM
    record keeps its own key in dim_customers but receives no email-matched facts.

    A table: fct_orders, fct_survey_responses, dim_customers and the incremental facts'
    change detection all look identifiers up in it (indexed), so it is resolved once per
    build instead of once per reader.

    Incremental by identifier (macros/change_log.sql): it reads int_identity_observations
    (every record naming a customer, emails normalised and indexed) and re-resolves only the
    emails and accounts whose observations changed since its last build, plus the accounts
    whose latest email is one of those emails (their key follows the email's), plus the
    latest emails of those accounts (to look their keys up). Every other identifier keeps
    its row: its inputs did not change. It logs the customer keys of the identifiers it
    replaced, before and after, for dim_customers.
-#}

{#- Reading scattered rows: the observations of the accounts and emails in scope (430k at
    1M customers after a one-day delta) lie all over a 1.7 GB table. Each lookup is one
    array of keys (`= any(array(...))`) read by a bitmap heap scan, with index scans off:
    the bitmap reads the pages in file order and asks for many at once (prefetch_reads),
    where an index scan waits for one page after the other. With the table out of the page
    cache its select took 5.6-6.1 s instead of 17.2-17.7 s, and 2.6-2.7 s instead of
    3.1-3.6 s with the table in memory (docs/operations/marts.md, "Reading from disk"). -#}

{#- the models whose change log it reads -#}
{%- set producers = ['int_identity_observations'] %}

{{
    config(
        materialized='incremental',
        incremental_strategy='replace_changed_keys',
        unique_key='customer_identifier_id',
        change_log_key='customer_identifier_id',
        change_log_skip_unchanged=true,
        change_log_producers=producers,
        change_log_as_of=false,
        change_log_replaced_key='customer_key',
        on_schema_change='fail',
        pre_hook=["set local work_mem = '256MB'", "set local enable_indexscan = off", "{{ log_rebuilt_in_full() }}"],
        post_hook=[
            "{{ record_change_position() }}",
            "{{ set_not_null(['customer_identifier_id', 'customer_key', 'identifier', 'is_inferred']) }}",
            "{{ enforce_accepted_values('identifier_type', ['email', 'sales_account']) }}",
        ],
        indexes=[
            {'columns': ['customer_identifier_id'], 'unique': True},
            {'columns': ['identifier_type', 'identifier'], 'unique': True},
            {'columns': ['customer_email']},
            {'columns': ['customer_key']},
        ],
    )
}}

{%- set changes = change_log_state(producers) %}

with

observations as not materialized (

    select * from {{ ref('int_identity_observations') }}

),

{% if not changes.full -%}
changed_identifiers as (

    {{ changed_keys_since_last_build(changes) | indent(4) }}

),

changed_emails as (

    select substr(key_value, length('email:') + 1) as customer_email
    from changed_identifiers
    where key_value like 'email:%'

),

-- accounts with a changed order, and accounts whose latest email (as resolved last time) changed
accounts_in_scope as materialized (

    select substr(key_value, length('sales_account:') + 1) as sales_account_id
    from changed_identifiers
    where key_value like 'sales_account:%'

    union

    select resolved.identifier
    from {{ this }} as resolved
    where resolved.identifier_type = 'sales_account'
        and resolved.customer_email = any(array(select customer_email from changed_emails))

),

{% endif -%}

-- Read once: in an incremental build the emails in scope come from these rows too (reading
-- them twice by index was a fifth of the select's page reads at 1M customers).
account_observations as materialized (

    select * from observations
    where source = 'sales'
        and sales_account_id is not null
    {%- if not changes.full %}
        and sales_account_id = any(array(select sales_account_id from accounts_in_scope))
    {%- endif %}

),

{% if not changes.full -%}
-- changed emails, and the emails of the accounts in scope (their keys are looked up below)
emails_in_scope as materialized (

    select customer_email from changed_emails

    union

    select customer_email
    from account_observations
    where customer_email is not null

),

{% endif -%}

email_observations as (

    select * from observations
    where customer_email is not null
    {%- if not changes.full %}
        and customer_email = any(array(select customer_email from emails_in_scope))
    {%- endif %}

),

crm_emails as (

    select
        customer_id,
        customer_email,
        created_at,
        row_number() over (
            partition by customer_email
            order by is_archived asc, created_at asc nulls last, customer_id asc
        ) as email_owner_rank

    from email_observations
    where source = 'crm'

),

crm_email_owners as (

    select
        customer_email,
        customer_id,
        created_at as first_seen_at

    from crm_emails
    where email_owner_rank = 1

),

sales_emails as (

    select
        customer_email,
        min(seen_at) as first_seen_at

    from email_observations
    where source = 'sales'
    group by 1

),

survey_emails as (

    select
        customer_email,
        min(seen_at) as first_seen_at

    from email_observations
    where source = 'surveys'
    group by 1

),

all_emails as (

    select customer_email from crm_email_owners
    union
    select customer_email from sales_emails
    union
    select customer_email from survey_emails

),

resolved_emails as (

    select
        all_emails.customer_email,
        crm_email_owners.customer_id,
        coalesce(
            cast(crm_email_owners.customer_id as text),
            'inferred-' || md5(all_emails.customer_email)
        ) as customer_key,
        crm_email_owners.customer_id is null as is_inferred,
        crm_email_owners.customer_id is not null as is_in_crm,
        sales_emails.customer_email is not null as is_seen_in_sales,
        survey_emails.customer_email is not null as is_seen_in_surveys,
        least(
            crm_email_owners.first_seen_at,
            sales_emails.first_seen_at,
            survey_emails.first_seen_at
        ) as first_seen_at

    from all_emails
    left join crm_email_owners
        on all_emails.customer_email = crm_email_owners.customer_email
    left join sales_emails
        on all_emails.customer_email = sales_emails.customer_email
    left join survey_emails
        on all_emails.customer_email = survey_emails.customer_email

),

account_latest_emails as (

    select distinct on (sales_account_id)
        sales_account_id,
        customer_email

    from account_observations
    where customer_email is not null
    order by sales_account_id asc, seen_at desc, order_id desc

),

accounts as (

    select
        sales_account_id,
        min(seen_at) as first_seen_at

    from account_observations
    group by 1

),

resolved_accounts as (

    select
        accounts.sales_account_id,
        resolved_emails.customer_email,
        resolved_emails.customer_id,
        coalesce(
            resolved_emails.customer_key,
            'inferred-' || md5('sales_account:' || accounts.sales_account_id)
        ) as customer_key,
        coalesce(resolved_emails.is_inferred, true) as is_inferred,
        coalesce(resolved_emails.is_in_crm, false) as is_in_crm,
        accounts.first_seen_at

    from accounts
    left join account_latest_emails
        on accounts.sales_account_id = account_latest_emails.sales_account_id
    left join resolved_emails
        on account_latest_emails.customer_email = resolved_emails.customer_email

),

final as (

    select
        'email:' || customer_email as customer_identifier_id,
        customer_key,
        customer_id,
        'email' as identifier_type,
        customer_email as identifier,
        customer_email,
        is_inferred,
        is_in_crm,
        is_seen_in_sales,
        is_seen_in_surveys,
        first_seen_at

    from resolved_emails

    union all

    select
        'sales_account:' || sales_account_id as customer_identifier_id,
        customer_key,
        customer_id,
        'sales_account' as identifier_type,
        sales_account_id as identifier,
        customer_email,
        is_inferred,
        is_in_crm,
        true as is_seen_in_sales,
        false as is_seen_in_surveys,
        first_seen_at

    from resolved_accounts

)

select * from final
