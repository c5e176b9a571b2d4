{#-
    One row per support case with a contact on or before the as-of date: its outcome as of
    that date and what its customer did after the case's last contact (the anchor):
    repurchased within contact_repurchase_window_days (90) days, i.e. a purchase day in
    (anchor, anchor + 90]; churned within contact_churn_window_days (180) days, i.e. a churn
    (int_purchase_gaps_assessed_for_churn) dated in (anchor, anchor + 180]. A case is
    followed up only when both windows have fully passed by the as-of date; the others
    are kept with is_followed_up false.

    Incremental by customer (macros/change_log.sql): a build recomputes every case of
    * the customers whose contacts, cases or post-contact surveys changed (the contacts'
      log: fct_support_interactions re-derives a whole case when its case record changes;
      the months that log holds too are not customers, and are left out);
    * the customers whose purchase days or churn gaps were recomputed (their logs);
    * the customers with something the moved as-of date lets in: a contact dated in the
      days it moved over, a stored unresolved case resolved by the new date, a stored case
      whose follow-up windows end in the days it moved over;
    * and every customer sharing a case with those (a case's customer is the least of its
      contacts' customers), so no customer's row is replaced by a case recomputed for
      another one.
-#}

{#- the models whose change log it reads -#}
{%- set producers = ['fct_support_interactions', 'int_orders_aggregated_to_purchase_days', 'int_purchase_gaps_assessed_for_churn'] %}

{{
    config(
        materialized='incremental',
        incremental_strategy='replace_changed_keys',
        unique_key='case_id',
        change_log_key='customer_key',
        change_log_skip_unchanged=true,
        change_log_producers=producers,
        change_log_key_patterns={'fct_support_interactions': not_contact_month_key_pattern()},
        on_schema_change='fail',
        post_hook=[
            "{{ record_change_position() }}",
            "{{ set_not_null(['case_id']) }}",
            "{{ create_index_if_missing('cases_by_follow_up_end', '(' ~ follow_up_end_date() ~ ')', 'not is_followed_up') }}",
        ],
        indexes=[{'columns': ['case_id'], 'unique': True}, {'columns': ['customer_key']}],
    )
}}

{%- set changes = change_log_state(producers) %}

with

all_interactions as not materialized (

    select * from {{ ref('fct_support_interactions') }}

),

{% if not changes.full -%}
customers_changed as (

    {{ changed_keys_since_last_build(changes) | indent(4) }}

    union

    -- contacts loaded before and dated in the days the as-of date moved over
    select customer_key
    from all_interactions
    where started_date > cast('{{ changes.previous_as_of }}' as date)
        and started_date <= {{ as_of_date() }}

    union

    -- stored unresolved cases that the new as-of date sees resolved
    select previous.customer_key
    from {{ this }} as previous
    inner join {{ ref('stg_crm__support_cases') }} as support_cases
        on previous.case_id = support_cases.case_id
    where previous.case_outcome = 'unresolved'
        and support_cases.is_resolved
        and cast(support_cases.resolved_at at time zone 'UTC' as date) <= {{ as_of_date() }}

    union

    -- stored cases whose follow-up windows end in the days the as-of date moved over
    -- (through the partial index on that day, create_index_if_missing: a scan of every case
    -- on the chain of the churn marts). None ends earlier: the build whose as-of date moved
    -- over that day recomputed its case, and followed it up.
    select customer_key
    from {{ this }}
    where not is_followed_up
        and {{ follow_up_end_date() }} > cast('{{ changes.previous_as_of }}' as date)
        and {{ follow_up_end_date() }} <= {{ as_of_date() }}

),

-- The changed customers and, transitively, everyone sharing a case with them. Each step
-- looks the customers it found up by the contacts' customer_key and case_id indexes: a
-- lateral subquery (offset 0 keeps it apart) is run for each of them. As a join, the
-- planner cannot count the recursion's rows and joined every contact to every other of its
-- case (2M pairs, 1.4-2.5 s at 1M customers) to keep the few of about 17k customers.
customers_in_scope as materialized (

    with recursive sharing_a_case (key_value) as (

        select key_value from customers_changed

        union

        select others.customer_key
        from sharing_a_case
        cross join lateral (
            select others.customer_key
            from all_interactions as theirs
            inner join all_interactions as others
                on theirs.case_id = others.case_id
            where theirs.customer_key = sharing_a_case.key_value
            offset 0
        ) as others

    )

    select key_value from sharing_a_case where key_value is not null

),

{% endif -%}

interactions as (

    select * from all_interactions
    {{ where_in_scope(changes) }}

),

support_cases as (

    select * from {{ ref('stg_crm__support_cases') }}

),

purchase_days as (

    select * from {{ ref('int_orders_aggregated_to_purchase_days') }}
    {{ where_in_scope(changes) }}

),

purchase_gaps as (

    select * from {{ ref('int_purchase_gaps_assessed_for_churn') }}
    {{ where_in_scope(changes) }}

),

case_contacts as (

    select
        case_id,
        min(customer_key) as customer_key,
        count(*) as contact_count,
        min(started_date) as first_contact_date,
        max(started_date) as last_contact_date

    from interactions
    where started_date <= {{ as_of_date() }}
        and case_id is not null
    group by 1

),

outcomes as (

    select
        case_contacts.case_id,
        case_contacts.customer_key,
        case
            when support_cases.is_first_contact_resolution
                and cast(support_cases.resolved_at at time zone 'UTC' as date) <= {{ as_of_date() }}
                then 'resolved at first contact'
            when support_cases.is_resolved
                and cast(support_cases.resolved_at at time zone 'UTC' as date) <= {{ as_of_date() }}
                then 'resolved after more contacts'
            else 'unresolved'
        end as case_outcome,
        case_contacts.contact_count,
        -- both windows have passed: the same day the scope above and its index look up
        {{ follow_up_end_date('case_contacts.last_contact_date') }} <= {{ as_of_date() }}
        as is_followed_up,
        case_contacts.first_contact_date,
        case_contacts.last_contact_date

    from case_contacts
    left join support_cases
        on case_contacts.case_id = support_cases.case_id
        {%- if not changes.full %}
        -- the cases in scope looked up by key, not all 600k merged in (0.5 s at 1M customers)
        and support_cases.case_id = any(array(select case_id from case_contacts))
        {%- endif %}

),

repurchases as (

    select
        outcomes.case_id,
        min(purchase_days.purchase_date) as next_purchase_date

    from outcomes
    inner join purchase_days
        on outcomes.customer_key = purchase_days.customer_key
        and purchase_days.purchase_date > outcomes.last_contact_date
    group by 1

),

churns as (

    select
        outcomes.case_id,
        min(purchase_gaps.churned_date) as next_churned_date

    from outcomes
    inner join purchase_gaps
        on outcomes.customer_key = purchase_gaps.customer_key
        and purchase_gaps.churned_date > outcomes.last_contact_date
    -- implied by the date condition, but said so the planner hashes the churned days only
    -- (a tenth of them), not every purchase day
    where purchase_gaps.is_churned
    group by 1

),

final as (

    select
        outcomes.case_id,
        outcomes.customer_key,
        outcomes.case_outcome,
        outcomes.contact_count,
        outcomes.case_outcome <> 'unresolved' as is_resolved,
        outcomes.is_followed_up,
        coalesce(
            repurchases.next_purchase_date <= outcomes.last_contact_date + {{ contact_repurchase_window_days() }},
            false
        ) as has_repurchased_within_window,
        coalesce(
            churns.next_churned_date <= outcomes.last_contact_date + {{ contact_churn_window_days() }},
            false
        ) as has_churned_within_window,
        outcomes.first_contact_date,
        outcomes.last_contact_date,
        repurchases.next_purchase_date,
        churns.next_churned_date

    from outcomes
    left join repurchases
        on outcomes.case_id = repurchases.case_id
    left join churns
        on outcomes.case_id = churns.case_id

)

select * from final
