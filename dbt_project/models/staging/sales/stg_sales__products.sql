{#- One select, not the house style's `source` and `renamed` CTEs: PostgreSQL does not
    merge a view that holds a WITH into the query reading it, so an incremental model joining
    this view on a key could not reach raw's index and scanned the raw table in full. -#}

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
