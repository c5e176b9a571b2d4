{#- One select, not the house style's `source` and `renamed` CTEs: PostgreSQL does not
    merge a view that holds a WITH into the query reading it, so an incremental model joining
    this view on a key could not reach raw's index and scanned the raw table in full. -#}

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
