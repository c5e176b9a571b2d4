{#- An order's customer key looked up row by row in identity resolution (`identities`):
    its email's key, else its sales account's, as fct_orders resolves every order. Two
    scalar subqueries by the unique index on (identifier_type, identifier): the second runs
    only for an order whose email found nothing (one without an email), and neither can be
    pulled up into a join the planner may hash. As joins, tens of thousands of orders made
    it hash every email and every account of identity resolution, a million rows each (2.9 s
    of a 6.1 s select after three days at 1M customers; docs/operations/marts.md, "Stop
    50"); as two lateral selects, every order cost both probes ("Stop 62"). For the few
    orders of an incremental build: a build in full hashes the joins, as every order needs
    a key. -#}
{% macro customer_key_looked_up(email, sales_account_id) -%}
coalesce(
    (
        select identities.customer_key
        from identities
        where identities.identifier_type = 'email'
            and identities.identifier = {{ email }}
    ),
    (
        select identities.customer_key
        from identities
        where identities.identifier_type = 'sales_account'
            and identities.identifier = {{ sales_account_id }}
    )
)
{%- endmacro %}
