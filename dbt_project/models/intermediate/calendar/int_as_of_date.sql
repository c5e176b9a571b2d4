{#-
    One row: the as-of date of this build, and where it came from.

    1. var('as_of_date') when given (`cem run --as-of YYYY-MM-DD`, or --vars on dbt);
    2. else the Airflow data interval end, var('data_interval_end'), but never later than
       the latest data: a historical load or a stalled source must not make every customer
       look churned because the clock moved on;
    3. else the latest data: the last day with an order, a survey response or a support
       interaction.
-#}

{%- set explicit = var('as_of_date', none) -%}
{%- set interval_end = var('data_interval_end', none) -%}

-- The day of the newest timestamp, not the newest of every row's day: the same date (a
-- row's day never falls as its timestamp rises), without converting each of millions of
-- rows to a date first (0.55 s against 0.9 s for the orders at 1M customers). The first
-- order's day comes from the same scan, for dim_dates, which scanned the orders again.
with

orders as (

    select
        cast(min(ordered_at) at time zone 'UTC' as date) as first_date,
        cast(max(ordered_at) at time zone 'UTC' as date) as latest_date

    from {{ ref('stg_sales__orders') }}

),

responses as (

    select cast(max(responded_at) at time zone 'UTC' as date) as latest_date
    from {{ ref('stg_surveys__responses') }}

),

interactions as (

    select cast(max(started_at) at time zone 'UTC' as date) as latest_date
    from {{ ref('stg_crm__interactions') }}

),

latest_data as (

    select
        greatest(orders.latest_date, responses.latest_date, interactions.latest_date) as latest_date,
        orders.first_date as first_order_date

    from orders
    cross join responses
    cross join interactions

),

final as (

    select
        {% if explicit -%}
        cast('{{ explicit }}' as date) as as_of_date,
        'var as_of_date' as resolved_from,
        {%- elif interval_end -%}
        least(cast(cast('{{ interval_end }}' as timestamptz) at time zone 'UTC' as date), latest_data.latest_date) as as_of_date,
        case
            when cast(cast('{{ interval_end }}' as timestamptz) at time zone 'UTC' as date) <= latest_data.latest_date
                then 'data interval end'
            else 'latest data (before the data interval end)'
        end as resolved_from,
        {%- else -%}
        latest_data.latest_date as as_of_date,
        'latest data' as resolved_from,
        {%- endif %}
        latest_data.latest_date as latest_data_date,
        latest_data.first_order_date

    from latest_data

)

select * from final
