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

{#- Each raw table a bound is kept for (macros/kept_data_bounds.sql): its staging model, key
    and bounded column, and its bounds, each stored as the holder's key and the value. -#}
{%- set kept_tables = [
    {'name': 'orders', 'model': 'stg_sales__orders', 'key': 'order_id', 'column': 'ordered_at', 'type': 'timestamptz', 'bounds': [
        {'name': 'first_order', 'lowest': true, 'holder': 'first_order_id', 'value': 'first_order_at'},
        {'name': 'latest_order', 'lowest': false, 'holder': 'latest_order_id', 'value': 'latest_order_at'},
    ]},
    {'name': 'responses', 'model': 'stg_surveys__responses', 'key': 'response_id', 'column': 'responded_at', 'type': 'timestamptz', 'bounds': [
        {'name': 'latest_response', 'lowest': false, 'holder': 'latest_response_id', 'value': 'latest_response_at'},
    ]},
    {'name': 'interactions', 'model': 'stg_crm__interactions', 'key': 'interaction_id', 'column': 'started_at', 'type': 'timestamptz', 'bounds': [
        {'name': 'latest_interaction', 'lowest': false, 'holder': 'latest_interaction_id', 'value': 'latest_interaction_at'},
    ]},
    {'name': 'customers', 'model': 'stg_crm__customers', 'key': 'customer_id', 'column': 'acquisition_date', 'type': 'date', 'bounds': [
        {'name': 'first_acquisition', 'lowest': true, 'holder': 'first_acquired_customer_id', 'value': 'first_acquisition_date'},
    ]},
] %}

{#- the columns that store them, in the table's order: each bound's holder and value, then
    the table's watermark -#}
{%- set stored_columns = [] %}
{%- set bound_names = [] %}
{%- for table in kept_tables %}
    {%- for bound in table.bounds %}
        {%- do stored_columns.extend([bound.holder, bound.value]) %}
        {%- do bound_names.append(bound.name) %}
    {%- endfor %}
    {%- do stored_columns.append(table.name ~ '_loaded_through') %}
{%- endfor %}

{#- what this build starts from (none: every bound read from every row) -#}
{%- set previous = previous_data_bounds(stored_columns) %}
{%- set stored = previous or {} %}
{#- small when read since a watermark (used by each bound and the watermark), every row
    otherwise (read once) -#}
{%- set loaded_kind = 'materialized' if previous else 'not materialized' %}

-- The bounds are whole timestamps, their days taken at the end: the same date (a row's day
-- never falls as its timestamp rises), without converting each row to a date first.
with
{% for table in kept_tables %}
{%- set watermark = stored.get(table.name ~ '_loaded_through') %}
{{ table.name }}_loaded as {{ loaded_kind }} (

    {{ rows_loaded_since(ref(table.model), [table.key, table.column], watermark) | indent(4) }}

),
{% for bound in table.bounds %}
{{ bound.name }} as (

    {{ data_bound(ref(table.model), table, bound, stored) | indent(4) }}

),
{% endfor %}
{%- endfor %}
bounds as (

    select
        {%- for table in kept_tables %}
        {%- for bound in table.bounds %}
        (select holder_key from {{ bound.name }}) as {{ bound.holder }},
        (select bound from {{ bound.name }}) as {{ bound.value }},
        {%- endfor %}
        {{ loaded_through(table.name ~ '_loaded', stored.get(table.name ~ '_loaded_through')) }} as {{ table.name }}_loaded_through,
        {%- endfor %}
        (
            select count(*)
            from (
                {%- for name in bound_names %}
                {{ 'union all ' if not loop.first }}select read_in_full from {{ name }}
                {%- endfor %}
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
        latest_data.bounds_read_in_full,
        {%- for column in stored_columns %}
        latest_data.{{ column }}{{ ',' if not loop.last }}
        {%- endfor %}

    from latest_data

)

select * from final
