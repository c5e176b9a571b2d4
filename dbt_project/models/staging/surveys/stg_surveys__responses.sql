{#- One select, not the house style's CTEs, so joins reach raw's indexes: docs/operations/marts.md, "What one build does". -#}

select
    response_id,
    invitation_id,
    survey_id,
    touchpoint,
    {{ normalize_email('respondent_email') }} as respondent_email,
    respondent_email as respondent_email_as_typed,
    {{ nps_category('ltr') }} as nps_category,
    comment,
    _source_file as source_file,
    ltr as likelihood_to_recommend,
    csat as csat_score,
    ces as ces_score,
    overall_satisfaction,
    choose_again,
    buy_different_products,
    expand_use,
    switch_to_competitor,
    renew,
    csat >= 4 as is_satisfied,
    ces >= 5 as is_low_effort,
    coalesce(btrim(comment, E' \t\r\n'), '') <> '' as has_comment,
    cast(responded_at at time zone 'UTC' as date) as responded_date,
    sent_at,
    responded_at,
    _loaded_at as loaded_at

from {{ source('surveys', 'survey_responses') }}
