{#-
    One row per customer and purchase day (as of the as-of date): the gap that follows the
    purchase day, up to the next purchase day or, after the last one, up to the as-of date,
    and whether the customer churned in it (CEM_DOMAIN.md).

    * The threshold after purchase day k comes from the customer's rhythm known then:
      max(floor, multiple x median of the gaps between their purchase days 1..k), rounded up
      to whole days (default max(90, 3 x median); floor alone while there is no gap yet).
      A later build therefore never rewrites an earlier churn: the churn of any past date
      is what a build as of that date said.
    * "As of a date" means at the end of that day, so a customer who last purchased on day L
      has gone longer than threshold days without a purchase at the end of L + threshold:
      churned_date = L + threshold, churned as of every day from churned_date on.
    * An explicit cancellation (CRM cancelled_at) falling in the gap churns the customer on
      that day. A cancellation before the first purchase is ignored.
    * The earlier of the two is the churn; a tie counts as the explicit cancellation.
    * A churned customer who buys again is won back on that purchase day.

    Incremental by customer (macros/change_log.sql). Only the open gap (after the last
    purchase day) depends on the as-of date, so a build recomputes: customers whose purchase
    days changed (logged by int_orders_aggregated_to_purchase_days), customers whose CRM
    record was loaded again (a cancellation date may have changed; logged by
    int_identity_observations, whose email and account keys it skips), and customers whose open gap reaches its threshold or
    cancellation in the days the as-of date moved over. gap_end_date is therefore null for
    the open gap, not the as-of date: every other row stays as it was. It logs the
    customers it recomputed, for fct_customer_churn_stored.

    A customer is recomputed from the first purchase day whose gap can have changed
    (change_log_rows_from): gap k depends on days 1..k+1 and on a cancellation date inside
    it alone, so every gap before that day stands. The purchase days log the first day they
    changed; a CRM record loaded again, a cancellation or a threshold falling due in the
    days the as-of date moved over changes the gap holding that date (the reasons and their
    dates: macros/churn_gaps_in_scope.sql, which the pre-hook writes to a temporary table
    that this select and the strategy read). After one day's delta most customers in scope
    have one new day, and two of their gaps are recomputed, not all. Their purchase days
    are read in full, for the running medians.
-#}

{#- One index, unique on the grain (customer_key, purchase_date), as for the purchase days:
    a unique index on the text purchase_day_id was most of an insert's cost ("Stop 56"). -#}

{#- the models whose change log it reads -#}
{%- set producers = ['int_orders_aggregated_to_purchase_days', 'int_identity_observations'] %}

{{
    config(
        materialized='incremental',
        incremental_strategy='replace_changed_keys',
        unique_key='purchase_day_id',
        change_log_key='customer_key',
        change_log_skip_unchanged=true,
        change_log_replaced_key='customer_key',
        change_log_producers=producers,
        change_log_key_patterns={'int_identity_observations': crm_customer_key_pattern()},
        change_log_rows_from='purchase_date',
        on_schema_change='fail',
        pre_hook=["{{ churn_gaps_in_scope() }}", "set local enable_nestloop = off"],
        post_hook=[
            "{{ record_change_position() }}",
            "{{ set_not_null(['purchase_day_id', 'customer_key', 'purchase_date', 'threshold_days']) }}",
            "{{ enforce_accepted_values('churn_rule', ['no purchase within threshold', 'explicit cancellation']) }}",
            "{{ create_index_if_missing('open_gaps_by_due_date', '(purchase_date + threshold_days)', 'is_last_purchase_day and not is_churned') }}",
        ],
        indexes=[{'columns': ['customer_key', 'purchase_date'], 'unique': True}],
    )
}}

{%- set changes = change_log_state(producers) %}

with

{% if not changes.full -%}
-- One row per customer in scope with the first purchase day whose gap is recomputed
-- (rows_from; null: every gap), as the pre-hook wrote them for this select and the strategy
-- (macros/churn_gaps_in_scope.sql); a customer none of whose gaps can have changed
-- ('infinity') is left out.
customers_in_scope as (

    select key_value, rows_from
    from {{ rows_from_scope() }}
    where rows_from is distinct from 'infinity'

),

{% endif -%}

{#- The customers in scope as one sorted array, which the purchase days' customer index
    takes in key order, and no nested loop anywhere (pre-hook), as in
    fct_customer_churn_stored: the planner guesses the change log's keys at a few dozen
    when it holds tens of thousands. Joined by `in (...)`, with the recomputed days filtered
    by customer, it put the CRM records in a nested loop under a one-row estimate, and a
    three-day build at 1M customers did not end in 13 minutes. -#}
purchase_days as (

    select * from {{ ref('int_orders_aggregated_to_purchase_days') }}
    {{- where_in_scope_by_array(changes) }}

),

crm_customers as (

    select * from {{ ref('stg_crm__customers') }}
    {%- if not changes.full %}
    -- the customers in scope, by the raw table's primary key (an inferred key is not a
    -- number and has no CRM record): hashing all of them cost about 1 s at 1M customers
    where customer_id = any(array(
        {{ crm_customer_ids_in('customers_in_scope') }}
    ))
    {%- endif %}

),

-- The gaps between purchase days 1..k, for every purchase day k: one window pass over the
-- customer's days. (A self-join of every day with its earlier days, grouped by the later
-- day's text key, cost twice as long and spilled its sort at 200k customers.)
prefix_gaps as (

    select
        purchase_days.*,
        array_agg(purchase_days.days_since_previous_purchase)
            filter (where purchase_days.purchase_day_number >= 2)
            over (
                partition by purchase_days.customer_key
                order by purchase_days.purchase_day_number
                rows between unbounded preceding and current row
            ) as gaps_so_far

    from purchase_days

),

-- the purchase days whose gaps are recomputed: each customer's from its rows_from
recomputed_days as (

    select prefix_gaps.*
    from prefix_gaps
    {%- if not changes.full %}
    inner join customers_in_scope
        on prefix_gaps.customer_key = customers_in_scope.key_value
    where prefix_gaps.purchase_date >= coalesce(customers_in_scope.rows_from, '-infinity')
    {%- endif %}

),

thresholded as (

    select
        recomputed_days.purchase_day_id,
        recomputed_days.customer_key,
        recomputed_days.purchase_day_number,
        running_medians.median_gap_days,
        cast(
            greatest(
                {{ churn_threshold_floor_days() }},
                ceil({{ churn_threshold_gap_multiple() }} * running_medians.median_gap_days)
            ) as integer
        ) as threshold_days,
        recomputed_days.next_purchase_date is null as is_last_purchase_day,
        recomputed_days.purchase_date,
        recomputed_days.next_purchase_date,
        -- the last day of the gap: the day before the next purchase, else the as-of date
        coalesce(recomputed_days.next_purchase_date - 1, {{ as_of_date() }}) as assessed_until

    from recomputed_days
    -- the median of those gaps; null on the first purchase day (no gap yet)
    cross join lateral (
        select cast(percentile_cont(0.5) within group (order by gap) as numeric) as median_gap_days
        from unnest(recomputed_days.gaps_so_far) as gap
    ) as running_medians

),

candidates as (

    select
        thresholded.*,
        case
            when thresholded.purchase_date + thresholded.threshold_days <= thresholded.assessed_until
                then thresholded.purchase_date + thresholded.threshold_days
        end as threshold_churned_date,
        case
            when crm_customers.cancelled_date between thresholded.purchase_date and thresholded.assessed_until
                then crm_customers.cancelled_date
        end as cancellation_date

    from thresholded
    left join crm_customers
        on thresholded.customer_key = cast(crm_customers.customer_id as text)

),

final as (

    select
        purchase_day_id,
        customer_key,
        case
            when cancellation_date <= coalesce(threshold_churned_date, cancellation_date)
                then 'explicit cancellation'
            when threshold_churned_date is not null
                then 'no purchase within threshold'
        end as churn_rule,
        purchase_day_number,
        threshold_days,
        median_gap_days,
        is_last_purchase_day,
        coalesce(threshold_churned_date, cancellation_date) is not null as is_churned,
        coalesce(threshold_churned_date, cancellation_date) is not null
        and next_purchase_date is not null as is_won_back,
        purchase_date,
        -- null while the gap is open: the as-of date is not stored, so the row stays valid
        -- as the date moves until the threshold or a cancellation falls due
        next_purchase_date - 1 as gap_end_date,
        least(threshold_churned_date, cancellation_date) as churned_date,
        case
            when coalesce(threshold_churned_date, cancellation_date) is not null
                then next_purchase_date
        end as won_back_date

    from candidates

)

-- fct_customer_churn_stored reads a customer's gaps together
select * from final
{{ stored_in_order_of(['customer_key', 'purchase_day_number']) }}
