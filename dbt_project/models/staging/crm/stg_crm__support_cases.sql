{#- One select, not the house style's CTEs, so joins reach raw's indexes: docs/operations/marts.md, "What one build does". -#}

select
    case_id,
    customer_id,
    channel,
    topic,
    status as case_status,
    contact_count,
    coalesce(is_resolved, false) as is_resolved,
    coalesce(resolved_first_contact, false) as is_resolved_first_contact,
    reopened_at is not null as is_reopened,
    -- First-contact resolution (CEM_DOMAIN.md): resolved in one contact and not reopened
    -- within 7 days of the resolution. The CRM's own flag ignores reopening.
    coalesce(
        is_resolved
        and resolved_first_contact
        and (reopened_at is null or reopened_at > resolved_at + interval '7 days'),
        false
    ) as is_first_contact_resolution,
    cast(opened_at at time zone 'UTC' as date) as opened_date,
    opened_at,
    resolved_at,
    reopened_at,
    closed_at,
    created_at,
    updated_at,
    _loaded_at as loaded_at

from {{ source('crm', 'support_cases') }}
