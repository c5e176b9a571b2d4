{#-
    One row: the as-of date of this build, and where it came from.

    1. var('as_of_date') when given (`cem run --as-of YYYY-MM-DD`, or --vars on dbt);
    2. else the Airflow data interval end, var('data_interval_end'), but never later than
       the latest data: a historical load or a stalled source must not make every customer
       look churned because the clock moved on;
    3. else the latest data: the last day with an order, a survey response or a support
       interaction.

    It also holds where the data starts (the first order, the first acquisition) for
    dim_dates. Each bound is kept from the previous build with the key of the row holding
    it, and moved by the rows loaded since (macros/kept_data_bounds.sql): a build reads a
    day's rows, not every order, response, contact and customer. bounds_read_in_full counts
    the bounds this build had to read from every row.
-#}

{%- set explicit = var('as_of_date', none) -%}
{%- set interval_end = var('data_interval_end', none) -%}

{{
    config(
        pre_hook="{{ wait_for_raw_publishes(reads_by_watermark=true) }}",
    )
}}

{#- the stored bounds and watermarks this build starts from (macros/kept_data_bounds.sql) -#}
{%- set previous = previous_data_bounds([
    'first_order_id', 'first_order_at', 'latest_order_id', 'latest_order_at', 'orders_loaded_through',
    'latest_response_id', 'latest_response_at', 'responses_loaded_through',
    'latest_interaction_id', 'latest_interaction_at', 'interactions_loaded_through',
    'first_acquired_customer_id', 'first_acquisition_date', 'customers_loaded_through',
]) %}
{%- set stored = previous or {} %}
{#- small when read since a watermark (used three times), every row otherwise (read once) -#}
{%- set loaded_kind = 'materialized' if previous else 'not materialized' %}

-- The bounds are whole timestamps, their days taken at the end: the same date (a row's day
-- never falls as its timestamp rises), without converting each row to a date first.
with

orders_loaded as {{ loaded_kind }} (

    {{ rows_loaded_since(ref('stg_sales__orders'), ['order_id', 'ordered_at'], stored.get('orders_loaded_through')) | indent(4) }}

),

responses_loaded as {{ loaded_kind }} (

    {{ rows_loaded_since(ref('stg_surveys__responses'), ['response_id', 'responded_at'], stored.get('responses_loaded_through')) | indent(4) }}

),

interactions_loaded as {{ loaded_kind }} (

    {{ rows_loaded_since(ref('stg_crm__interactions'), ['interaction_id', 'started_at'], stored.get('interactions_loaded_through')) | indent(4) }}

),

customers_loaded as {{ loaded_kind }} (

    {{ rows_loaded_since(ref('stg_crm__customers'), ['customer_id', 'acquisition_date'], stored.get('customers_loaded_through')) | indent(4) }}

),

first_order as (

    {{ data_bound(ref('stg_sales__orders'), 'order_id', 'ordered_at', true, 'orders_loaded',
                  stored.get('first_order_id'), stored.get('first_order_at'), stored.get('orders_loaded_through'), 'timestamptz') | indent(4) }}

),

latest_order as (

    {{ data_bound(ref('stg_sales__orders'), 'order_id', 'ordered_at', false, 'orders_loaded',
                  stored.get('latest_order_id'), stored.get('latest_order_at'), stored.get('orders_loaded_through'), 'timestamptz') | indent(4) }}

),

latest_response as (

    {{ data_bound(ref('stg_surveys__responses'), 'response_id', 'responded_at', false, 'responses_loaded',
                  stored.get('latest_response_id'), stored.get('latest_response_at'), stored.get('responses_loaded_through'), 'timestamptz') | indent(4) }}

),

latest_interaction as (

    {{ data_bound(ref('stg_crm__interactions'), 'interaction_id', 'started_at', false, 'interactions_loaded',
                  stored.get('latest_interaction_id'), stored.get('latest_interaction_at'), stored.get('interactions_loaded_through'), 'timestamptz') | indent(4) }}

),

first_acquisition as (

    {{ data_bound(ref('stg_crm__customers'), 'customer_id', 'acquisition_date', true, 'customers_loaded',
                  stored.get('first_acquired_customer_id'), stored.get('first_acquisition_date'), stored.get('customers_loaded_through'), 'date') | indent(4) }}

),

bounds as (

    select
        (select holder_key from first_order) as first_order_id,
        (select bound from first_order) as first_order_at,
        (select holder_key from latest_order) as latest_order_id,
        (select bound from latest_order) as latest_order_at,
        {{ loaded_through('orders_loaded', stored.get('orders_loaded_through')) }} as orders_loaded_through,
        (select holder_key from latest_response) as latest_response_id,
        (select bound from latest_response) as latest_response_at,
        {{ loaded_through('responses_loaded', stored.get('responses_loaded_through')) }} as responses_loaded_through,
        (select holder_key from latest_interaction) as latest_interaction_id,
        (select bound from latest_interaction) as latest_interaction_at,
        {{ loaded_through('interactions_loaded', stored.get('interactions_loaded_through')) }} as interactions_loaded_through,
        (select holder_key from first_acquisition) as first_acquired_customer_id,
        (select bound from first_acquisition) as first_acquisition_date,
        {{ loaded_through('customers_loaded', stored.get('customers_loaded_through')) }} as customers_loaded_through,
        (
            select count(*)
            from (
                select read_in_full from first_order
                union all select read_in_full from latest_order
                union all select read_in_full from latest_response
                union all select read_in_full from latest_interaction
                union all select read_in_full from first_acquisition
            ) as found
            where read_in_full
        ) as bounds_read_in_full

),

latest_data as (

    select
        bounds.*,
        greatest(
            cast(bounds.latest_order_at at time zone 'UTC' as date),
            cast(bounds.latest_response_at at time zone 'UTC' as date),
            cast(bounds.latest_interaction_at at time zone 'UTC' as date)
        ) as latest_date,
        cast(bounds.first_order_at at time zone 'UTC' as date) as first_order_date

    from bounds

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
        latest_data.first_order_date,
        latest_data.first_acquisition_date,
        latest_data.bounds_read_in_full,
        latest_data.first_order_id,
        latest_data.first_order_at,
        latest_data.latest_order_id,
        latest_data.latest_order_at,
        latest_data.orders_loaded_through,
        latest_data.latest_response_id,
        latest_data.latest_response_at,
        latest_data.responses_loaded_through,
        latest_data.latest_interaction_id,
        latest_data.latest_interaction_at,
        latest_data.interactions_loaded_through,
        latest_data.first_acquired_customer_id,
        latest_data.customers_loaded_through

    from latest_data

)

select * from final
