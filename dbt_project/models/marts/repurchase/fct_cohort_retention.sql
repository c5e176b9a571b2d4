{#-
    Cohort retention as of the as-of date: one row per acquisition cohort (calendar month of
    the customer's first purchase) and month since acquisition (0 = the acquisition month),
    up to the as-of month. Active = purchased (an order not cancelled) in that month.
    Every cohort has a row for every month up to the as-of month, with 0 active when nobody
    bought; the as-of month is partial (is_complete_month false).
-#}

with

purchase_days as (

    select * from {{ ref('int_orders_aggregated_to_purchase_days') }}

),

customer_cohorts as (

    select
        customer_key,
        cast(date_trunc('month', min(purchase_date)) as date) as cohort_month

    from purchase_days
    group by 1

),

cohorts as (

    select
        cohort_month,
        count(*) as cohort_customers

    from customer_cohorts
    group by 1

),

cohort_months as (

    select
        cohorts.cohort_month,
        cohorts.cohort_customers,
        cast(activity_months.activity_month as date) as activity_month

    from cohorts
    cross join lateral generate_series(
        cohorts.cohort_month,
        cast(date_trunc('month', {{ as_of_date() }}) as date),
        interval '1 month'
    ) as activity_months (activity_month)

),

monthly_activity as (

    select
        customer_cohorts.cohort_month,
        cast(date_trunc('month', purchase_days.purchase_date) as date) as activity_month,
        count(distinct purchase_days.customer_key) as active_customers

    from purchase_days
    inner join customer_cohorts
        on purchase_days.customer_key = customer_cohorts.customer_key
    group by 1, 2

),

final as (

    select
        cast(cohort_months.cohort_month as text) || '|'
        || cast({{ calendar_months_between('cohort_months.cohort_month', 'cohort_months.activity_month') }} as text)
        as cohort_retention_id,
        {{ calendar_months_between('cohort_months.cohort_month', 'cohort_months.activity_month') }}
        as months_since_acquisition,
        cohort_months.cohort_customers,
        coalesce(monthly_activity.active_customers, 0) as active_customers,
        round(
            coalesce(monthly_activity.active_customers, 0)::numeric / cohort_months.cohort_customers, 4
        ) as retention_rate,
        cast(cohort_months.activity_month + interval '1 month' - interval '1 day' as date)
        <= {{ as_of_date() }} as is_complete_month,
        cohort_months.cohort_month,
        cohort_months.activity_month,
        {{ as_of_date() }} as as_of_date

    from cohort_months
    left join monthly_activity
        on cohort_months.cohort_month = monthly_activity.cohort_month
        and cohort_months.activity_month = monthly_activity.activity_month

)

select * from final
