{#- One select, not the house style's `source` and `renamed` CTEs: PostgreSQL does not
    merge a view that holds a WITH into the query reading it, so an incremental model joining
    this view on a key could not reach raw's index and scanned the raw table in full. -#}

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
