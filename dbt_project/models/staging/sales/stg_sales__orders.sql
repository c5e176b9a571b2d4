{#- One select, not the house style's `source` and `renamed` CTEs: PostgreSQL does not
    merge a view that holds a WITH into the query reading it, so an incremental model joining
    this view on a key could not reach raw's index and scanned the raw table in full. -#}

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
