{#-
    "Every contact is a test of the brand": churn and repurchase after resolved vs unresolved
    support cases, one row per case outcome as of the as-of date (resolved at first contact,
    resolved after more contacts, unresolved). Windows run from the case's last contact:
    repurchase within 90 days, churn within 180 days (macros/churn_parameters.sql); the rates
    count only cases whose windows have fully passed by the as-of date (followed up), per
    case (a customer with two cases counts twice).
-#}

{#- Counted per customer first, then per outcome: two hash aggregations in memory instead of
    a sort of every case by outcome and customer for count(distinct customer_key), which
    spilled to disk at the default work_mem. It is the last model of a build's longest path:
    on the 1M-customer bench warehouse (623,617 cases) the select took 0.67-0.84 s against
    1.54-1.70 s (docs/operations/marts.md, "Stop 73"). -#}
{{ config(pre_hook=["set local work_mem = '256MB'"]) }}

with

support_cases as (

    select * from {{ ref('int_support_cases_followed_up') }}

),

outcomes as (

    select
        outcome,
        is_resolved

    from (
        values
            ('resolved at first contact', true),
            ('resolved after more contacts', true),
            ('unresolved', false)
    ) as known_outcomes (outcome, is_resolved)

),

counted_per_customer as (

    select
        case_outcome,
        customer_key,
        count(*) as cases,
        count(*) filter (where is_followed_up) as followed_up_cases,
        count(*) filter (where is_followed_up and has_churned_within_window) as churned_after_cases,
        count(*) filter (where is_followed_up and has_repurchased_within_window) as repurchased_after_cases

    from support_cases
    group by 1, 2

),

counted as (

    select
        case_outcome,
        cast(sum(cases) as bigint) as cases,
        -- one row per customer and outcome: the customers are its non-null keys
        count(customer_key) as customers,
        cast(sum(followed_up_cases) as bigint) as followed_up_cases,
        cast(sum(churned_after_cases) as bigint) as churned_after_cases,
        cast(sum(repurchased_after_cases) as bigint) as repurchased_after_cases

    from counted_per_customer
    group by 1

),

final as (

    select
        outcomes.outcome as case_outcome,
        coalesce(counted.cases, 0) as cases,
        coalesce(counted.customers, 0) as customers,
        coalesce(counted.followed_up_cases, 0) as followed_up_cases,
        coalesce(counted.churned_after_cases, 0) as churned_after_cases,
        coalesce(counted.repurchased_after_cases, 0) as repurchased_after_cases,
        {{ contact_churn_window_days() }} as churn_window_days,
        {{ contact_repurchase_window_days() }} as repurchase_window_days,
        round(counted.churned_after_cases::numeric / nullif(counted.followed_up_cases, 0), 4)
        as churn_rate_after_case,
        round(counted.repurchased_after_cases::numeric / nullif(counted.followed_up_cases, 0), 4)
        as repurchase_rate_after_case,
        outcomes.is_resolved,
        {{ as_of_date() }} as as_of_date

    from outcomes
    left join counted
        on outcomes.outcome = counted.case_outcome

)

select * from final
