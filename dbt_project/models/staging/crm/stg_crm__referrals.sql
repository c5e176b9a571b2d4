with

source as (

    select * from {{ source('crm', 'referrals') }}

),

renamed as (

    select
        referral_id,
        referrer_customer_id,
        referred_customer_id,
        referral_code,
        cast(created_at at time zone 'UTC' as date) as referred_date,
        created_at as referred_at,
        updated_at,
        _loaded_at as loaded_at

    from source

)

select * from renamed
