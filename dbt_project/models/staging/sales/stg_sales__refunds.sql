{#- One select, not the house style's CTEs, so joins reach raw's indexes: docs/operations/marts.md, "What one build does". -#}

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
