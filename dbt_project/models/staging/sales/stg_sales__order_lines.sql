with

source as (

    select * from {{ source('sales', 'order_lines') }}

),

renamed as (

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

    from source

)

select * from renamed
