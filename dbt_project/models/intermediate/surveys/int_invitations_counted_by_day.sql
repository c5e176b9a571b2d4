{#-
    Invitations per day of sending x day of their first answer x the invitee's loyalty
    category at sending, from int_invitations_categorised_at_sending: what the feedback
    columns of fct_advocacy_by_loyalty_category add up, cut at the as-of date (an invitation
    counts as sent when sent on or before it, as answered when first answered on or before
    it). Days, not months as in int_invitations_counted_by_sent_month, because the as-of
    date can fall on any day.

    Kept by the invitations' own writes (macros/counted_by_triggers.sql), like the monthly
    cells: the advocacy mart sums these cells instead of reading all 2.5M invitations on
    every build (0.65 s of its 0.89-1.03 s at 1M customers in stop 55's measurement;
    docs/operations/marts.md, "Stop 66"). Counted in full when the table is built, or when
    the invitations' table was replaced since.
-#}

{%- set producer = 'int_invitations_categorised_at_sending' %}

{%- set counting %}
select
    -- a missing day (no sending date in the generated data; an unanswered invitation) keeps
    -- a cell of its own
    coalesce(cast(sent_date as text), 'unknown') || '|'
    || coalesce(cast(first_responded_date as text), 'unanswered') || '|'
    || loyalty_category_at_sending as invitation_day_cell_id,
    sent_date,
    first_responded_date,
    loyalty_category_at_sending,
    count(*) as invitations

from __counted_rows__
group by sent_date, first_responded_date, loyalty_category_at_sending
{%- endset %}

{{
    config(
        materialized='incremental',
        incremental_strategy='kept_by_producer_triggers',
        unique_key='invitation_day_cell_id',
        counted_from=producer,
        counted_measures=['invitations'],
        counted_select=counting,
        on_schema_change='fail',
        post_hook=[
            "{{ keep_counts_by_triggers() }}",
            "{{ set_not_null('loyalty_category_at_sending') }}",
        ],
        indexes=[{'columns': ['invitation_day_cell_id'], 'unique': True}],
    )
}}

{{ counted_rows(counting, ref(producer)) }}
