{#- One select, not the house style's CTEs, so joins reach raw's indexes: docs/operations/marts.md, "What one build does". -#}

select
    status_change_id,
    order_id,
    from_status,
    to_status,
    cast(changed_at at time zone 'UTC' as date) as changed_date,
    changed_at,
    created_at,
    updated_at,
    _loaded_at as loaded_at

from {{ source('sales', 'order_status_changes') }}
