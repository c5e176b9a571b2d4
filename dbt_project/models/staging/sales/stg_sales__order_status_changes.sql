{#- One select, not the house style's `source` and `renamed` CTEs: PostgreSQL does not
    merge a view that holds a WITH into the query reading it, so an incremental model joining
    this view on a key could not reach raw's index and scanned the raw table in full. -#}

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
