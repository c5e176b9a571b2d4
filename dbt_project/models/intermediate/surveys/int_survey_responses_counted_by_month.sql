{#-
    Survey responses counted per calendar month (UTC) x customer segment x touchpoint: the
    one pass over the responses, joined to their customers' segments, behind fct_nps_monthly,
    fct_satisfaction_monthly and fct_loyalty_indices_monthly. Each of those joined a
    million responses to a million customers on its own (about 1.2 s each at 1M customers);
    they now read these few hundred cells.

    The segment is the customer's current CRM segment (dim_customers); a response from a
    customer the CRM does not know (inferred) or without a resolvable email counts under
    segment 'unknown', so no response is dropped. Each measure counts the responses that
    answered it (its own n); the means are kept unrounded, and the marts round them.
-#}

{#- It joins every response to its customer by hash, rebuilt in every build: with the
    default work_mem the join spilled 110 MB to temporary files at 1M customers. In two pairs
    of one-day builds on the bench warehouse, alternating 256MB for the whole database with
    the default, it took 1.76-2.24 s against 2.58-2.73 s, and 0.17-0.56 s less in each of
    the benchmark's builds after a delta (docs/operations/marts.md, "Stop 77"). -#}
{{ config(pre_hook=["set local work_mem = '256MB'"]) }}

with

survey_responses as (

    select * from {{ ref('fct_survey_responses') }}

),

customers as (

    select * from {{ ref('dim_customers_stored') }}

),

segmented as (

    select
        {{ month_start('survey_responses.responded_date') }} as response_month,
        coalesce(customers.segment, 'unknown') as segment,
        survey_responses.touchpoint,
        survey_responses.likelihood_to_recommend,
        {{ nps_category('survey_responses.likelihood_to_recommend') }} as nps_category,
        survey_responses.csat_score,
        survey_responses.ces_score,
        survey_responses.advocacy_loyalty_index,
        survey_responses.purchasing_loyalty_index,
        survey_responses.retention_loyalty_index

    from survey_responses
    left join customers
        on survey_responses.customer_key = customers.customer_key

),

counted as (

    select
        response_month,
        segment,
        touchpoint,
        count(*) as responses,
        count(likelihood_to_recommend) as ltr_responses,
        count(*) filter (where nps_category = 'promoter') as promoters,
        count(*) filter (where nps_category = 'passive') as passives,
        count(*) filter (where nps_category = 'detractor') as detractors,
        count(csat_score) as csat_responses,
        count(*) filter (where csat_score >= 4) as top_2_box_csat_responses,
        avg(csat_score) as mean_csat_unrounded,
        count(ces_score) as ces_responses,
        count(*) filter (where ces_score >= 5) as low_effort_responses,
        avg(ces_score) as mean_ces_unrounded,
        count(advocacy_loyalty_index) as advocacy_responses,
        avg(advocacy_loyalty_index) as advocacy_unrounded,
        count(purchasing_loyalty_index) as purchasing_responses,
        avg(purchasing_loyalty_index) as purchasing_unrounded,
        count(retention_loyalty_index) as retention_responses,
        avg(retention_loyalty_index) as retention_unrounded

    from segmented
    group by 1, 2, 3

),

final as (

    select
        response_month || '|' || segment || '|' || touchpoint as survey_month_cell_id,
        *

    from counted

)

select * from final
