with

referrals as (

    select * from {{ ref('stg_crm__referrals') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

first_orders as (

    select
        customer_key,
        order_id,
        ordered_at

    from orders
    where is_first_order

),

final as (

    select
        referrals.referral_id,
        referrals.referrer_customer_id,
        referrals.referred_customer_id,
        first_orders.order_id as referred_first_order_id,
        cast(referrals.referrer_customer_id as text) as referrer_customer_key,
        cast(referrals.referred_customer_id as text) as referred_customer_key,
        referrals.referral_code,
        -- converted when the referred customer placed a first (non-cancelled) order
        first_orders.order_id is not null as is_converted,
        referrals.referred_date,
        cast(first_orders.ordered_at at time zone 'UTC' as date) as converted_date,
        referrals.referred_at,
        first_orders.ordered_at as converted_at

    from referrals
    left join first_orders
        on cast(referrals.referred_customer_id as text) = first_orders.customer_key

)

select * from final
