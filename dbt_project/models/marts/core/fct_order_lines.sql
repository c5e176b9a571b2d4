with

order_lines as (

    select * from {{ ref('stg_sales__order_lines') }}

),

products as (

    select * from {{ ref('stg_sales__products') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

final as (

    select
        order_lines.order_line_id,
        order_lines.order_id,
        order_lines.product_id,
        orders.customer_key,
        products.product_line,
        products.tier_name,
        order_lines.line_number,
        products.tier,
        order_lines.quantity,
        order_lines.unit_price,
        products.unit_cost,
        order_lines.line_revenue,
        order_lines.quantity * products.unit_cost as line_cost,
        -- = quantity x unit_margin when sold at list price (fct_orders sums the same rule)
        order_lines.line_revenue - order_lines.quantity * products.unit_cost as line_margin,
        orders.is_cancelled,
        orders.ordered_date,
        orders.ordered_at

    from order_lines
    left join orders
        on order_lines.order_id = orders.order_id
    left join products
        on order_lines.product_id = products.product_id

)

select * from final
