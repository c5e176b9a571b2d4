{#- One select, not the house style's `source` and `renamed` CTEs: PostgreSQL does not
    merge a view that holds a WITH into the query reading it, so an incremental model joining
    this view on a key could not reach raw's index and scanned the raw table in full. -#}

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
