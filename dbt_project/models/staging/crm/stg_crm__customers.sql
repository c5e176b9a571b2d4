{#- One select, not the house style's CTEs, so joins reach raw's indexes: docs/operations/marts.md, "What one build does". -#}

select
    customer_id,
    {{ normalize_email('email') }} as customer_email,
    email as customer_email_as_typed,
    first_name,
    last_name,
    phone,
    segment,
    region,
    acquisition_channel,
    email_consent as has_email_consent,
    coalesce(is_archived, false) as is_archived,
    cancelled_at is not null as is_cancelled,
    acquisition_date,
    cast(cancelled_at at time zone 'UTC' as date) as cancelled_date,
    cancelled_at,
    created_at,
    updated_at,
    _loaded_at as loaded_at

from {{ source('crm', 'customers') }}
