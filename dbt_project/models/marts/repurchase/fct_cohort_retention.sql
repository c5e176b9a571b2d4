{#-
    Cohort retention as of the as-of date: one row per acquisition cohort (calendar month of
    the customer's first purchase) and month since acquisition (0 = the acquisition month),
    up to the as-of month. Active = purchased (an order not cancelled) in that month.
    Every cohort has a row for every month up to the as-of month, with 0 active when nobody
    bought; the as-of month is partial (is_complete_month false).
-#}

with

-- Customers active per cohort and month, counted from the purchase days and kept by their
-- writes (int_purchase_days_counted_by_cohort_month): each customer's first purchase day of
-- a month stands for the customer in that month, so the counts are distinct customers.
-- (A count(distinct) over every purchase day, joined to each customer's cohort, sorted
-- them all by customer: 28 s of the steady-state build at 1M customers; one pass over the
-- purchase days, 1.0-1.3 s, on every build until stop 54.)
monthly_activity as (

    select
        cohort_month,
        activity_month,
        active_customers

    from {{ ref('int_purchase_days_counted_by_cohort_month') }}

),

-- A cohort's customers are its active customers in month 0: each has exactly one first
-- purchase day of their first month (their first purchase day), and nobody else has a
-- first purchase in it. (Counted apart, the cohorts took a second scan of every purchase
-- day.)
cohorts as (

    select
        cohort_month,
        active_customers as cohort_customers

    from monthly_activity
    where activity_month = cohort_month

),

cohort_months as (

    select
        cohorts.cohort_month,
        cohorts.cohort_customers,
        cast(activity_months.activity_month as date) as activity_month

    from cohorts
    cross join lateral generate_series(
        cohorts.cohort_month,
        {{ month_start(as_of_date()) }},
        interval '1 month'
    ) as activity_months (activity_month)

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
