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
-#}

with

purchase_days as (

    select * from {{ ref('int_orders_aggregated_to_purchase_days') }}

),

purchase_gaps as (

    select * from {{ ref('int_purchase_gaps_assessed_for_churn') }}

),

first_purchases as (

    select
        customer_key,
        min(purchase_date) as first_purchase_date

    from purchase_days
    group by 1

),

churn_episodes as (

    select * from purchase_gaps
    where is_churned

),

months as (

    select cast(calendar_months.month_start as date) as month_start

    from generate_series(
        (select cast(date_trunc('month', min(first_purchase_date)) as date) from first_purchases),
        cast(date_trunc('month', {{ as_of_date() }}) as date),
        interval '1 month'
    ) as calendar_months (month_start)

),

bounded_months as (

    select
        month_start,
        cast(month_start + interval '1 month' - interval '1 day' as date) as month_end

    from months

),

customers_before as (

    select
        bounded_months.month_start,
        count(first_purchases.customer_key) as customers_with_purchase

    from bounded_months
    left join first_purchases
        on first_purchases.first_purchase_date < bounded_months.month_start
    group by 1

),

churned_at_start as (

    select
        bounded_months.month_start,
        count(churn_episodes.purchase_day_id) as customers_churned_at_start

    from bounded_months
    left join churn_episodes
        on churn_episodes.churned_date < bounded_months.month_start
        and (churn_episodes.won_back_date is null or churn_episodes.won_back_date >= bounded_months.month_start)
    group by 1

),

churned_in_month as (

    select
        bounded_months.month_start,
        count(churn_episodes.purchase_day_id) as customers_churned,
        count(churn_episodes.purchase_day_id) filter (
            where churn_episodes.churn_rule = 'explicit cancellation'
        ) as customers_cancelled

    from bounded_months
    left join churn_episodes
        on churn_episodes.churned_date between bounded_months.month_start and bounded_months.month_end
    group by 1

),

won_back_in_month as (

    select
        bounded_months.month_start,
        count(churn_episodes.purchase_day_id) as customers_won_back

    from bounded_months
    left join churn_episodes
        on churn_episodes.won_back_date between bounded_months.month_start and bounded_months.month_end
    group by 1

),

final as (

    select
        bounded_months.month_start as churn_month,
        customers_before.customers_with_purchase - churned_at_start.customers_churned_at_start
        as customers_active_at_start,
        churned_at_start.customers_churned_at_start,
        churned_in_month.customers_churned,
        churned_in_month.customers_cancelled,
        won_back_in_month.customers_won_back,
        round(
            churned_in_month.customers_churned::numeric
            / nullif(customers_before.customers_with_purchase - churned_at_start.customers_churned_at_start, 0),
            4
        ) as churn_rate,
        round(
            won_back_in_month.customers_won_back::numeric
            / nullif(churned_at_start.customers_churned_at_start, 0),
            4
        ) as win_back_rate,
        bounded_months.month_end <= {{ as_of_date() }} as is_complete_month,
        bounded_months.month_end,
        {{ as_of_date() }} as as_of_date

    from bounded_months
    inner join customers_before
        on bounded_months.month_start = customers_before.month_start
    inner join churned_at_start
        on bounded_months.month_start = churned_at_start.month_start
    inner join churned_in_month
        on bounded_months.month_start = churned_in_month.month_start
    inner join won_back_in_month
        on bounded_months.month_start = won_back_in_month.month_start

)

select * from final
