{#- One select, not the house style's CTEs, so joins reach raw's indexes: docs/operations/marts.md, "What one build does". -#}

select
    order_id,
    sales_account_id,
    {{ normalize_email('customer_email') }} as customer_email,
    customer_email as customer_email_as_typed,
    status as order_status,
    currency,
    order_total,
    status = 'cancelled' as is_cancelled,
    status = 'refunded' as is_refunded,
    cast(ordered_at at time zone 'UTC' as date) as ordered_date,
    ordered_at,
    created_at,
    updated_at,
    _loaded_at as loaded_at

from {{ source('sales', 'orders') }}
