{#- One select, not the house style's CTEs, so joins reach raw's indexes: docs/operations/marts.md, "What one build does". -#}

select
    referral_id,
    referrer_customer_id,
    referred_customer_id,
    referral_code,
    cast(created_at at time zone 'UTC' as date) as referred_date,
    created_at as referred_at,
    updated_at,
    _loaded_at as loaded_at

from {{ source('crm', 'referrals') }}
