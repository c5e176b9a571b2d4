{#- One select, not the house style's CTEs, so joins reach raw's indexes: docs/operations/marts.md, "What one build does". -#}

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
