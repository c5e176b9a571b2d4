{#-
    The churn episodes' events counted per kind and calendar month: first purchases (a
    customer's first purchase day), churns (with the explicit cancellations among them) and
    win-backs, from int_purchase_gaps_assessed_for_churn. fct_churn_monthly turns them into
    its monthly rates and running figures.

    One scan of the rows it counts: every first purchase, churn and win-back is an event
    counted in its month (three grouping sets over the same rows, which read each row once:
    1.2 s against 1.6 s multiplying each row by its three events first, at 1M customers).

    Kept by the churn gaps' own writes (macros/counted_by_triggers.sql): their table's
    statement triggers add the events of the rows each build inserts and take away those of
    the rows it deletes, so a build reads these few dozen cells instead of scanning all
    4.8M churn gaps again (1.2-1.6 s at 1M customers). Counted in full when the table is
    built, or when the churn gaps' table was replaced since.
-#}

{%- set producer = 'int_purchase_gaps_assessed_for_churn' %}

{%- set counting %}
with

-- Each row's three event months, read once: the first purchase's (its first purchase day),
-- the churn's and the win-back's (null where there is none).
event_months as (

    select
        case
            when purchase_day_number = 1 then {{ month_start('purchase_date') }}
        end as first_purchase_month,
        {{ month_start('churned_date') }} as churn_month,
        {{ month_start('won_back_date') }} as win_back_month,
        churn_rule

    from __counted_rows__
    where purchase_day_number = 1 or is_churned

),

-- One grouping per kind of event in a single pass (grouping sets). Each grouping also has
-- a group of the rows without that event (its month null), left out below.
events_grouped as (

    select
        case
            when grouping(first_purchase_month) = 0 then 'first purchase'
            when grouping(churn_month) = 0 then 'churn'
            else 'win-back'
        end as event_kind,
        coalesce(first_purchase_month, churn_month, win_back_month) as event_month,
        count(*) as events,
        count(*) filter (where churn_rule = 'explicit cancellation') as cancellations

    from event_months
    group by grouping sets ((first_purchase_month), (churn_month), (win_back_month))

)

select
    event_kind || '|' || cast(event_month as text) as churn_event_cell_id,
    event_kind,
    event_month,
    events,
    -- the count is taken in every grouping; only a churn's cancellations are kept
    case when event_kind = 'churn' then cancellations else 0 end as cancellations

from events_grouped
where event_month is not null
{%- endset %}

{{
    config(
        materialized='incremental',
        incremental_strategy='kept_by_producer_triggers',
        unique_key='churn_event_cell_id',
        counted_from=producer,
        counted_measures=['events', 'cancellations'],
        counted_select=counting,
        on_schema_change='fail',
        post_hook=[
            "{{ keep_counts_by_triggers() }}",
            "{{ set_not_null(['event_kind', 'event_month']) }}",
            "{{ enforce_accepted_values('event_kind', ['first purchase', 'churn', 'win-back']) }}",
        ],
        indexes=[{'columns': ['churn_event_cell_id'], 'unique': True}],
    )
}}

{{ counted_rows(counting, ref(producer)) }}
