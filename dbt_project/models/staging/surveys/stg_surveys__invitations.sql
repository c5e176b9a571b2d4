{#- One select, not the house style's CTEs, so joins reach raw's indexes: docs/operations/marts.md, "What one build does". -#}

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
