{#- One select, not the house style's CTEs, so joins reach raw's indexes: docs/operations/marts.md, "What one build does". -#}

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

from {{ source('crm', 'interactions') }}
