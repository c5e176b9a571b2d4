{#-
    Monthly churn and win-back, one row per calendar month from the first purchase month to
    the as-of month (partial: is_complete_month false). Churns and win-backs are the
    episodes of int_purchase_gaps_assessed_for_churn, so a month's figures never change in a
    later build.

    * active at start  = customers with a purchase before the month who were not churned at
                         the end of the day before it;
    * churned at start = customers churned at the end of the day before it;
    * churned in month = churns dated in the month; won back in month = win-back purchases
                         in the month;
    * churn rate = churned in month / active at start; win-back rate = won back in month /
      churned at start (CEM_DOMAIN.md). A customer acquired in the month who cancels in the
      same month churns without having been active at its start (rare).

    Every first purchase, churn and win-back is an event counted in its month
    (int_churn_events_counted_by_month, kept by the churn gaps' writes since stop 54), and
    the figures at a month's start are running sums of the months before it. An episode is
    won back after it churned (the win-back purchase comes after the churned date), so the
    customers churned at a month's start are the churns before it less the win-backs before
    it. (Joining every month to every episode dated before it took 12.6 s at 1M customers.)
-#}

with

-- The events per kind and month (first purchases, churns and their cancellations,
-- win-backs), counted from the churn gaps and kept by their writes
-- (int_churn_events_counted_by_month).
events_by_month as (

    select
        event_month as month_start,
        -- one row per kind and month: sum() only picks it (as bigint, like a count)
        cast(coalesce(sum(events) filter (where event_kind = 'first purchase'), 0) as bigint) as first_purchases,
        cast(coalesce(sum(events) filter (where event_kind = 'churn'), 0) as bigint) as churns,
        cast(coalesce(sum(cancellations) filter (where event_kind = 'churn'), 0) as bigint) as cancellations,
        cast(coalesce(sum(events) filter (where event_kind = 'win-back'), 0) as bigint) as win_backs

    from {{ ref('int_churn_events_counted_by_month') }}
    group by 1

),

months as (

    select cast(calendar_months.month_start as date) as month_start

    from generate_series(
        (select min(month_start) from events_by_month where first_purchases > 0),
        {{ month_start(as_of_date()) }},
        interval '1 month'
    ) as calendar_months (month_start)

),

running as (

    select
        months.month_start,
        cast(months.month_start + interval '1 month' - interval '1 day' as date) as month_end,
        coalesce(sum(events_by_month.first_purchases) over months_before, 0) as customers_with_purchase,
        coalesce(sum(events_by_month.churns) over months_before, 0)
        - coalesce(sum(events_by_month.win_backs) over months_before, 0) as customers_churned_at_start,
        coalesce(events_by_month.churns, 0) as customers_churned,
        coalesce(events_by_month.cancellations, 0) as customers_cancelled,
        coalesce(events_by_month.win_backs, 0) as customers_won_back

    from months
    left join events_by_month
        on months.month_start = events_by_month.month_start
    window months_before as (
        order by months.month_start asc rows between unbounded preceding and 1 preceding
    )

),

final as (

    select
        month_start as churn_month,
        cast(customers_with_purchase - customers_churned_at_start as bigint) as customers_active_at_start,
        cast(customers_churned_at_start as bigint) as customers_churned_at_start,
        customers_churned,
        customers_cancelled,
        customers_won_back,
        round(
            customers_churned::numeric / nullif(customers_with_purchase - customers_churned_at_start, 0),
            4
        ) as churn_rate,
        round(
            customers_won_back::numeric / nullif(customers_churned_at_start, 0),
            4
        ) as win_back_rate,
        month_end <= {{ as_of_date() }} as is_complete_month,
        month_end,
        {{ as_of_date() }} as as_of_date

    from running

)

select * from final
