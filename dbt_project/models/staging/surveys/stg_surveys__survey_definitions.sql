with

source as (

    select * from {{ source('surveys', 'survey_definitions') }}

),

renamed as (

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

    from source

)

select * from renamed
