{#-
    Invitations sent and answered per month of sending (UTC) x survey x touchpoint x the
    invitee's loyalty category at sending, from int_invitations_categorised_at_sending: what
    fct_survey_response_rates and fct_survey_response_rates_by_loyalty_category add up. An
    invitation counts once as answered however many responses it got.

    Kept by the invitations' own writes (macros/counted_by_triggers.sql): their table's
    statement triggers add the cells of the rows each build inserts and take away those of
    the rows it deletes, so a build reads these few thousand cells instead of counting all
    2.5M invitations twice (0.7-1.2 s per mart at 1M customers). Counted in full when the
    table is built, or when the invitations' table was replaced since.
-#}

{%- set producer = 'int_invitations_categorised_at_sending' %}

{%- set counting %}
select
    -- an invitation without a sending date (none in the generated data) keeps a cell of its own
    coalesce(cast({{ month_start('sent_date') }} as text), 'unknown') || '|' || survey_id
    || '|' || touchpoint || '|' || loyalty_category_at_sending as invitation_cell_id,
    {{ month_start('sent_date') }} as sent_month,
    survey_id,
    touchpoint,
    loyalty_category_at_sending,
    count(*) as invitations,
    count(*) filter (where is_answered) as answered_invitations

from __counted_rows__
group by {{ month_start('sent_date') }}, survey_id, touchpoint, loyalty_category_at_sending
{%- endset %}

{{
    config(
        materialized='incremental',
        incremental_strategy='kept_by_producer_triggers',
        unique_key='invitation_cell_id',
        counted_from=producer,
        counted_measures=['invitations', 'answered_invitations'],
        counted_select=counting,
        on_schema_change='fail',
        post_hook=[
            "{{ keep_counts_by_triggers() }}",
            "{{ set_not_null(['survey_id', 'touchpoint', 'loyalty_category_at_sending']) }}",
        ],
        indexes=[{'columns': ['invitation_cell_id'], 'unique': True}],
    )
}}

{{ counted_rows(counting, ref(producer)) }}
