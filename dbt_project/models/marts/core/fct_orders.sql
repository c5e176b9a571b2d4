with

orders as (

    select * from {{ ref('stg_sales__orders') }}

),

order_lines as (

    select * from {{ ref('stg_sales__order_lines') }}

),

products as (

    select * from {{ ref('stg_sales__products') }}

),

refunds as (

    select * from {{ ref('stg_sales__refunds') }}

),

identities as (

    select * from {{ ref('int_customers_resolved_across_sources') }}

),

-- Line margin = line revenue - quantity x unit cost (= quantity x unit_margin at list price);
-- fct_order_lines.line_margin uses the same rule.
lines_summed as (

    select
        order_lines.order_id,
        count(*) as line_count,
        sum(order_lines.quantity) as item_quantity,
        sum(order_lines.line_revenue) as revenue,
        sum(order_lines.line_revenue - order_lines.quantity * products.unit_cost) as gross_margin

    from order_lines
    left join products
        on order_lines.product_id = products.product_id
    group by 1

),

refunds_summed as (

    select
        order_id,
        sum(refund_amount) as refunded_amount,
        max(refunded_at) as last_refunded_at

    from refunds
    group by 1

),

resolved as (

    select
        orders.*,
        coalesce(by_email.customer_key, by_account.customer_key) as customer_key

    from orders
    left join identities as by_email
        on by_email.identifier_type = 'email'
        and orders.customer_email = by_email.identifier
    left join identities as by_account
        on by_account.identifier_type = 'sales_account'
        and orders.sales_account_id = by_account.identifier

),

numbered as (

    select
        resolved.*,
        -- nth purchase of the customer; cancelled orders were never purchases and get no number
        case
            when not coalesce(resolved.is_cancelled, false) then
                row_number() over (
                    partition by resolved.customer_key, coalesce(resolved.is_cancelled, false)
                    order by resolved.ordered_at asc, resolved.order_id asc
                )
        end as customer_order_number

    from resolved

),

final as (

    select
        numbered.order_id,
        numbered.customer_key,
        numbered.sales_account_id,
        numbered.customer_email,
        numbered.order_status,
        cast(numbered.currency as text) as currency,
        coalesce(lines_summed.line_count, 0) as line_count,
        coalesce(lines_summed.item_quantity, 0) as item_quantity,
        numbered.customer_order_number,
        numbered.order_total,
        coalesce(lines_summed.revenue, 0) as revenue,
        coalesce(refunds_summed.refunded_amount, 0) as refunded_amount,
        coalesce(lines_summed.revenue, 0) - coalesce(refunds_summed.refunded_amount, 0) as net_revenue,
        coalesce(lines_summed.gross_margin, 0) as gross_margin,
        coalesce(lines_summed.gross_margin, 0) - coalesce(refunds_summed.refunded_amount, 0) as net_margin,
        coalesce(numbered.is_cancelled, false) as is_cancelled,
        coalesce(numbered.is_refunded, false) as is_refunded,
        refunds_summed.order_id is not null as has_refund,
        coalesce(numbered.customer_order_number = 1, false) as is_first_order,
        numbered.ordered_date,
        numbered.ordered_at,
        refunds_summed.last_refunded_at,
        numbered.updated_at

    from numbered
    left join lines_summed
        on numbered.order_id = lines_summed.order_id
    left join refunds_summed
        on numbered.order_id = refunds_summed.order_id

)

select * from final
