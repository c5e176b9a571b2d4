{#- One select, not the house style's `source` and `renamed` CTEs: PostgreSQL does not
    merge a view that holds a WITH into the query reading it, so an incremental model joining
    this view on a key could not reach raw's index and scanned the raw table in full. -#}

select
    invitation_id,
    survey_id,
    related_order_id,
    related_case_id,
    related_interaction_id,
    touchpoint,
    {{ normalize_email('respondent_email') }} as respondent_email,
    respondent_email as respondent_email_as_typed,
    _source_file as source_file,
    cast(sent_at at time zone 'UTC' as date) as sent_date,
    sent_at,
    _loaded_at as loaded_at

from {{ source('surveys', 'invitations') }}
