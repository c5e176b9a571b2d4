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

    A table, not a view: fct_orders, fct_survey_responses, dim_customers and the incremental
    facts' change detection all look identifiers up in it (indexed), so it is resolved once
    per build instead of once per reader.
-#}

{{
    config(
        materialized='table',
        pre_hook="set local work_mem = '256MB'",
        indexes=[
            {'columns': ['identifier_type', 'identifier'], 'unique': True},
            {'columns': ['customer_email']},
        ],
    )
}}

with

crm_customers as (

    select * from {{ ref('stg_crm__customers') }}

),

orders as (

    select * from {{ ref('stg_sales__orders') }}

),

invitations as (

    select * from {{ ref('stg_surveys__invitations') }}

),

responses as (

    select * from {{ ref('stg_surveys__responses') }}

),

crm_emails as (

    select
        customer_id,
        {{ normalize_email('customer_email') }} as customer_email,
        created_at,
        row_number() over (
            partition by {{ normalize_email('customer_email') }}
            order by is_archived asc, created_at asc nulls last, customer_id asc
        ) as email_owner_rank

    from crm_customers
    where {{ normalize_email('customer_email') }} is not null

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
        {{ normalize_email('customer_email') }} as customer_email,
        min(ordered_at) as first_seen_at

    from orders
    where {{ normalize_email('customer_email') }} is not null
    group by 1

),

survey_emails as (

    select
        customer_email,
        min(seen_at) as first_seen_at

    from (
        select
            {{ normalize_email('respondent_email') }} as customer_email,
            sent_at as seen_at

        from invitations

        union all

        select
            {{ normalize_email('respondent_email') }} as customer_email,
            coalesce(sent_at, responded_at) as seen_at

        from responses
    ) as seen
    where customer_email is not null
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

account_orders as (

    select
        sales_account_id,
        {{ normalize_email('customer_email') }} as customer_email,
        ordered_at,
        order_id

    from orders
    where sales_account_id is not null

),

account_latest_emails as (

    select distinct on (sales_account_id)
        sales_account_id,
        customer_email

    from account_orders
    where customer_email is not null
    order by sales_account_id asc, ordered_at desc, order_id desc

),

accounts as (

    select
        sales_account_id,
        min(ordered_at) as first_seen_at

    from account_orders
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
