{#-
    Churn per customer as of the as-of date, stored: one row per customer with a purchase on
    or before it, with the customer's segment, churn (the open gap of
    int_purchase_gaps_assessed_for_churn), win-back, the last CSAT and LTR before churning,
    and the dates the lifecycle stage is decided from. fct_customer_churn (a view) adds what
    moves with the as-of date alone: the days since the last purchase, the lifecycle stage
    (macro lifecycle_stage) and the as-of date itself. Storing those meant rewriting, on
    every build, every customer (the days) or the customers whose stage the date moved (the
    stage, until stop 70: about 4.2k customers a day at 1M customers, docs/operations/marts.md,
    "Stop 70"). dim_customers and the advocate behaviours take their churn columns from
    here, so this model must not read dim_customers.

    Until stop 76 the assessment was an intermediate table of its own
    (int_customers_churn_assessed) and this mart copied it with the segment added: two
    per-customer tables written one after the other on the longest chain of models a build
    waits for. After three days' delta at 1M customers the copy alone took 2.5-4.2 s
    (docs/operations/marts.md, "Stop 76").

    The segment is the CRM record's, as in dim_customers (a CRM customer's key is its
    customer_id as text; a customer known only from sales or surveys has none: 'unknown'). It is
    read from the CRM staging view, not from dim_customers, so this mart is built beside
    dim_customers instead of after it.

    Incremental by customer (macros/change_log.sql): a build recomputes the customers whose
    purchase gaps were recomputed (which covers churns the moving as-of date brought, see
    there), those whose survey responses changed, and those whose CRM record was loaded again
    (identity observations log the CRM customer key, beside emails and accounts, which it
    skips). Nothing else here depends on the as-of date; moving it back rebuilds the purchase
    gaps in full, and with them this mart (change_log_as_of=false: its rows follow the gaps,
    not the date). A recomputed customer whose row comes out as both generations hold it is
    left alone (change_log_skip_unchanged). Under write-audit-publish it logs the customers
    it replaced (change_log_replaced_key), so the retired generation is caught up after the
    swap (cem_warehouse.transform.generations), and the advocate behaviours read the same log.
-#}

{#- the models whose change log it reads -#}
{%- set producers = ['int_purchase_gaps_assessed_for_churn', 'fct_survey_responses', 'int_identity_observations'] %}

{{
    config(
        materialized='incremental',
        incremental_strategy='replace_changed_keys',
        unique_key='customer_key',
        change_log_key='customer_key',
        change_log_skip_unchanged=true,
        change_log_replaced_key='customer_key',
        change_log_producers=producers,
        change_log_key_patterns={'int_identity_observations': crm_customer_key_pattern()},
        change_log_as_of=false,
        on_schema_change='fail',
        pre_hook=["{{ log_rebuilt_in_full() }}", "set local work_mem = '256MB'", "set local enable_nestloop = off"],
        post_hook=[
            "{{ record_change_position() }}",
            "{{ set_not_null(['is_churned', 'first_purchase_date', 'last_purchase_date', 'threshold_days']) }}",
            "{{ enforce_accepted_values('churn_rule', ['no purchase within threshold', 'explicit cancellation']) }}",
            "{{ enforce_between([{'column': 'threshold_days', 'min_value': 90}, {'column': 'last_csat_before_churn', 'min_value': 1, 'max_value': 5}, {'column': 'last_ltr_before_churn', 'min_value': 0, 'max_value': 10}]) }}",
            "{{ keep_row_count() }}",
            "{{ analyze_when_stale() }}",
        ],
        indexes=[{'columns': ['customer_key'], 'unique': True}],
    )
}}

{%- set changes = change_log_state(producers) %}

with

{% if not changes.full -%}
customers_in_scope as materialized (

    {{ changed_keys_since_last_build(changes) | indent(4) }}

),

{% endif -%}

{#- The customers in scope as one sorted array, which each table's customer index takes
    in key order, and no nested loop anywhere (pre-hook). The planner's guess of how many
    keys the change log holds is far too low (30 for 15k after a one-day delta at 1M
    customers), and the steps below join CTE scans of tens of thousands of rows: at such
    estimates it may join them in nested loops. Read through `in (...)`, this select (then
    int_customers_churn_assessed's) took 19.7 s and 6.6 s in two builds of stop 70's
    benchmark against 1-2 s (those plans were not captured). Until stop 70 a scan of the
    assessment's table for changed lifecycle stages was part of the scope, and its estimate
    of a million rows kept the joins hashed. -#}
{%- set in_scope = where_in_scope_by_array(changes) %}

-- Read by three steps. A build in full scans the table for each; an incremental build
-- looks the customers in scope up once and keeps their rows (in memory: work_mem above),
-- where three rounds of index lookups took 0.95-1.08 s of its select against 0.75-0.81 s
-- (54k customers after three days' delta at 1M customers).
purchase_gaps as {{ 'not ' if changes.full }}materialized (

    select * from {{ ref('int_purchase_gaps_assessed_for_churn') }}
    {{- in_scope }}

),

survey_responses as (

    select * from {{ ref('fct_survey_responses') }}
    {{- in_scope }}

),

{% if changes.full -%}
crm_customers as (

    select customer_id, segment from {{ ref('stg_crm__customers') }}

),

{% endif -%}

-- the first purchase day's row, not an aggregate over every purchase day
first_purchases as (

    select
        customer_key,
        purchase_date as first_purchase_date

    from purchase_gaps
    where purchase_day_number = 1

),

win_backs as (

    select
        customer_key,
        count(*) as win_back_count,
        max(won_back_date) as won_back_date

    from purchase_gaps
    where is_won_back
    group by 1

),

current_gaps as (

    select * from purchase_gaps
    where is_last_purchase_day

),

-- The answers of churned customers on or before their churned date, joined once for the
-- two lookups below.
answers_before_churn as materialized (

    select
        current_gaps.customer_key,
        survey_responses.csat_score,
        survey_responses.nps_category,
        survey_responses.likelihood_to_recommend,
        survey_responses.responded_at,
        survey_responses.response_id

    from current_gaps
    inner join survey_responses
        on current_gaps.customer_key = survey_responses.customer_key
        and survey_responses.responded_date <= current_gaps.churned_date
    where current_gaps.is_churned
        and (survey_responses.csat_score is not null or survey_responses.likelihood_to_recommend is not null)

),

-- The last answer with a CSAT, and the last with an LTR.
last_csat_before_churn as (

    select distinct on (customer_key)
        customer_key,
        csat_score

    from answers_before_churn
    where csat_score is not null
    order by
        customer_key asc,
        responded_at desc,
        response_id desc

),

last_ltr_before_churn as (

    select distinct on (customer_key)
        customer_key,
        nps_category,
        likelihood_to_recommend

    from answers_before_churn
    where likelihood_to_recommend is not null
    order by
        customer_key asc,
        responded_at desc,
        response_id desc

),

joined as (

    select
        current_gaps.customer_key,
        {%- if changes.full %}
        coalesce(crm_customers.segment, 'unknown') as segment,
        {%- else %}
        -- The few customers in scope: each CRM record looked up by the raw table's primary
        -- key (an inferred key is not a number and finds none), one probe per customer. A
        -- subquery in the select list stays a lookup with nested loops off (pre-hook),
        -- where a join to the CRM view would hash every CRM customer.
        coalesce(
            (
                select crm.segment
                from {{ ref('stg_crm__customers') }} as crm
                where crm.customer_id = {{ crm_customer_id('current_gaps.customer_key') }}
            ),
            'unknown'
        ) as segment,
        {%- endif %}
        current_gaps.churn_rule,
        last_ltr_before_churn.nps_category as last_nps_category_before_churn,
        current_gaps.threshold_days,
        current_gaps.median_gap_days,
        last_csat_before_churn.csat_score as last_csat_before_churn,
        last_ltr_before_churn.likelihood_to_recommend as last_ltr_before_churn,
        coalesce(win_backs.win_back_count, 0) as win_back_count,
        current_gaps.is_churned,
        win_backs.customer_key is not null as is_won_back,
        first_purchases.first_purchase_date,
        current_gaps.purchase_date as last_purchase_date,
        current_gaps.churned_date,
        win_backs.won_back_date

    from current_gaps
    inner join first_purchases
        on current_gaps.customer_key = first_purchases.customer_key
    left join win_backs
        on current_gaps.customer_key = win_backs.customer_key
    left join last_csat_before_churn
        on current_gaps.customer_key = last_csat_before_churn.customer_key
    left join last_ltr_before_churn
        on current_gaps.customer_key = last_ltr_before_churn.customer_key
    {%- if changes.full %}
    left join crm_customers
        -- A CRM customer's key is its id as text (int_customers_resolved_across_sources), so
        -- the CRM side is cast, not the key: casting the key needed a digits-only check on
        -- every row first (an inferred key is not a number), and that regular expression
        -- was most of this step's time (4.3 s against 1.5-1.9 s at 1M customers).
        on current_gaps.customer_key = cast(crm_customers.customer_id as text)
    {%- endif %}

),

final as (

    select
        customer_key,
        segment,
        churn_rule,
        last_nps_category_before_churn,
        threshold_days,
        median_gap_days,
        last_csat_before_churn,
        last_ltr_before_churn,
        win_back_count,
        is_churned,
        last_csat_before_churn >= 4 as is_satisfied_before_churn,
        is_won_back,
        first_purchase_date,
        last_purchase_date,
        churned_date,
        won_back_date

    from joined

)

select * from final
