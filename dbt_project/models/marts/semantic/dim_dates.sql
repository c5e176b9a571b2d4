{#-
    One row per calendar day: the date dimension analysts join to, and the time spine the
    dbt semantic layer (MetricFlow) needs. It spans the data, from the first day any source
    saw a customer to the build's as-of date, so it moves with the data, never the clock.
-#}

with

bounds as (

    select
        -- the first order's day and the first acquisition, both kept by int_as_of_date
        (
            select least(first_order_date, first_acquisition_date)
            from {{ ref('int_as_of_date') }}
        ) as first_date,
        {{ as_of_date() }} as last_date

),

days as (

    select cast(day as date) as date_day

    from bounds
    cross join generate_series(
        coalesce(bounds.first_date, bounds.last_date),
        bounds.last_date,
        interval '1 day'
    ) as day

),

final as (

    select
        date_day,
        cast(date_trunc('week', date_day) as date) as week_start_date,
        {{ month_start('date_day') }} as month_start_date,
        cast(date_trunc('quarter', date_day) as date) as quarter_start_date,
        cast(extract(year from date_day) as integer) as calendar_year,
        cast(extract(isodow from date_day) as integer) as iso_day_of_week

    from days

)

select * from final
