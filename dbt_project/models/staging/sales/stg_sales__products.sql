{#- One select, not the house style's CTEs, so joins reach raw's indexes: docs/operations/marts.md, "What one build does". -#}

select
    product_id,
    sku,
    product_name,
    product_line,
    tier_name,
    currency,
    tier,
    list_price,
    unit_cost,
    list_price - unit_cost as unit_margin,
    round((list_price - unit_cost) / nullif(list_price, 0), 4) as unit_margin_rate,
    created_at,
    updated_at,
    _loaded_at as loaded_at

from {{ source('sales', 'products') }}
