{#-
    "Every contact is a test of the brand": churn and repurchase after resolved vs unresolved
    support cases, one row per case outcome as of the as-of date (resolved at first contact,
    resolved after more contacts, unresolved). Windows run from the case's last contact:
    repurchase within 90 days, churn within 180 days (macros/churn_parameters.sql); the rates
    count only cases whose windows have fully passed by the as-of date (followed up), per
    case (a customer with two cases counts twice).
-#}

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

counted as (

    select
        case_outcome,
        count(*) as cases,
        count(distinct customer_key) as customers,
        count(*) filter (where is_followed_up) as followed_up_cases,
        count(*) filter (where is_followed_up and has_churned_within_window) as churned_after_cases,
        count(*) filter (where is_followed_up and has_repurchased_within_window) as repurchased_after_cases

    from support_cases
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
