{#- One select, not the house style's CTEs, so joins reach raw's indexes: docs/operations/marts.md, "What one build does". -#}

select
    survey_id,
    survey_name,
    touchpoint,
    questions as questions_json,
    _source_file as source_file,
    version as survey_version,
    created_at,
    updated_at,
    _loaded_at as loaded_at

from {{ source('surveys', 'survey_definitions') }}
