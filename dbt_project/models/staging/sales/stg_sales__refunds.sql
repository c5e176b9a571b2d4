{#- One select, not the house style's `source` and `renamed` CTEs: PostgreSQL does not
    merge a view that holds a WITH into the query reading it, so an incremental model joining
    this view on a key could not reach raw's index and scanned the raw table in full. -#}

select
    refund_id,
    order_id,
    reason as refund_reason,
    amount as refund_amount,
    cast(refunded_at at time zone 'UTC' as date) as refunded_date,
    refunded_at,
    created_at,
    updated_at,
    _loaded_at as loaded_at

from {{ source('sales', 'refunds') }}
