{#-
    The churn gaps' customers in scope (int_purchase_gaps_assessed_for_churn), each with the
    first purchase day whose gap is recomputed: its pre-hook writes them to a temporary table
    (rows_from_scope(), macros/change_log.sql) that its select and its strategy
    (replace_changed_keys with change_log_rows_from) both read, so both recompute and
    replace the same rows. rows_from is null for every gap of the customer, 'infinity' for
    none, a date for the gaps of the purchase days from that date on.

    A gap runs from a purchase day to the next (the last one's is open, to the as-of date),
    and its churn depends on the customer's purchase days up to the next one and on the CRM
    cancellation date only when that date falls inside it. So a change that touches one
    date changes the gap holding it and no earlier one:

    * purchase days replaced or written: from the first of them (the purchase days log it;
      a day added or removed changes the day before it too, its next purchase date, and that
      day is the one logged); a key they logged without a date has every gap recomputed;
    * a CRM record loaded again (its cancellation date may have changed), or a cancellation
      dated in the days the as-of date moved over: the stored gap holding the cancellation
      date now, and the stored gap an explicit cancellation churned in before. A
      cancellation date that falls in no gap (before the first purchase, after the as-of
      date) churns nothing, and one that did not churn its gap (a threshold came first)
      changed nothing of it; with neither gap, no gap of the customer changes ('infinity').
      Until stop 72 such a customer had every gap recomputed: after three days' delta at 1M
      customers, 6.9k customers with 32k gaps whose CRM record had been loaded again for a
      segment, and 769 cancellations;
    * an open gap whose threshold falls due in the days the as-of date moved over: that gap
      alone (6.2k customers and 31k gaps after three days, all recomputed before).

    The earliest date of a customer's reasons wins, and a reason wanting every gap wins over
    any date. The dates come from the stored gaps, before this build replaces any: a gap
    before the first purchase day that changed is the same in the stored rows and the new
    ones (that day's predecessor did not change, nor its next purchase date), so a
    cancellation date before that day lies in the same gap in both.
-#}
{% macro churn_gaps_in_scope() %}
    {%- set changes = change_log_state() %}
    {%- if not changes.full %}
    create temporary table {{ rows_from_scope() }} on commit drop as
    select
        key_value,
        case when bool_or(rows_from is null) then null else min(rows_from) end as rows_from
    from (
        {{ changed_keys_from_dates(changes, ['int_orders_aggregated_to_purchase_days']) | indent(8) }}

        union all

        select crm_changes.key_value, coalesce(least(stored_gaps.holding_cancellation, stored_gaps.churned_by_cancellation), 'infinity')
        from (
            {{ changed_keys_since_last_build(changes, ['int_identity_observations']) | indent(12) }}

            union

            select cast(customer_id as text)
            from {{ ref('stg_crm__customers') }}
            where cancelled_date > cast('{{ changes.previous_as_of }}' as date)
                and cancelled_date <= {{ as_of_date() }}
        ) as crm_changes
        -- by the raw table's primary key (the keys are CRM ids: change_log_key_patterns)
        left join {{ ref('stg_crm__customers') }} as crm_customers
            on crm_customers.customer_id = cast(crm_changes.key_value as bigint)
        -- the customer's stored gaps, read once by their unique index
        left join lateral (
            select
                max(stored.purchase_date) filter (
                    where stored.purchase_date <= crm_customers.cancelled_date
                ) as holding_cancellation,
                min(stored.purchase_date) filter (
                    where stored.churn_rule = 'explicit cancellation'
                ) as churned_by_cancellation
            from {{ this }} as stored
            where stored.customer_key = crm_changes.key_value
        ) as stored_gaps on true

        union all

        -- through the partial index on their due date (create_index_if_missing): a scan of
        -- every purchase day took 0.45 s of the chain at 1M customers
        select customer_key, purchase_date
        from {{ this }}
        where is_last_purchase_day
            and not is_churned
            and purchase_date + threshold_days > cast('{{ changes.previous_as_of }}' as date)
            and purchase_date + threshold_days <= {{ as_of_date() }}
    ) as reasons (key_value, rows_from)
    group by key_value;
    analyze {{ rows_from_scope() }};
    {%- endif %}
{% endmacro %}
