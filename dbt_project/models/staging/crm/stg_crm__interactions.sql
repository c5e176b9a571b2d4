with

source as (

    select * from {{ source('crm', 'interactions') }}

),

renamed as (

    select
        interaction_id,
        case_id,
        customer_id,
        agent_id,
        channel,
        direction,
        handle_seconds,
        direction = 'inbound' as is_inbound,
        cast(started_at at time zone 'UTC' as date) as started_date,
        started_at,
        ended_at,
        created_at,
        updated_at,
        _loaded_at as loaded_at

    from source

)

select * from renamed
