{#- One select, not the house style's `source` and `renamed` CTEs: PostgreSQL does not
    merge a view that holds a WITH into the query reading it, so an incremental model joining
    this view on a key could not reach raw's index and scanned the raw table in full. -#}

select
    order_line_id,
    order_id,
    product_id,
    line_number,
    quantity,
    unit_price,
    line_amount as line_revenue,
    created_at,
    updated_at,
    _loaded_at as loaded_at

from {{ source('sales', 'order_lines') }}
