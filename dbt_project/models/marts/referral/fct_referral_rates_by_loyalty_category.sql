{#-
    Do advocates refer more? Referral rate = referrers / customers (CEM_DOMAIN.md) per loyalty
    category (dim_customers.loyalty_category, the NPS category of the customer's last LTR
    answer), over all loaded referrals (no as-of cut, like fct_referrers).

    Customers, their category, whether they referred (is_referrer) and how often
    (referrals_made) are dim_customers' own columns, so this mart, the semantic layer's
    referral_rate and fct_advocacy_by_loyalty_category (which cuts referrals at its as-of
    date) share one population and one referrer rule. Customers without a category (never
    answered an LTR, including customers known only from sales or surveys) form the 'unknown'
    row. A referral naming a referrer missing from dim_customers is in fct_referrers
    (is_in_dim_customers false) but in no category here. All four rows always exist.
-#}

with

customers as (

    select * from {{ ref('dim_customers') }}

),

referrers as (

    select * from {{ ref('fct_referrers') }}

),

categories as (

    select loyalty_category

    from (
        values ('promoter'), ('passive'), ('detractor'), ('unknown')
    ) as known_categories (loyalty_category)

),

customer_referrals as (

    select
        coalesce(customers.loyalty_category, 'unknown') as loyalty_category,
        customers.customer_key,
        customers.referrals_made,
        coalesce(referrers.converted_referrals, 0) as converted_referrals,
        coalesce(referrers.referred_customers, 0) as referred_customers,
        coalesce(referrers.referred_customers_revenue, 0) as referred_customers_revenue,
        coalesce(referrers.referred_customers_net_revenue, 0) as referred_customers_net_revenue,
        customers.is_referrer

    from customers
    left join referrers
        on customers.customer_key = referrers.referrer_customer_key

),

counted as (

    select
        loyalty_category,
        count(*) as customers,
        count(*) filter (where is_referrer) as referrers,
        cast(sum(referrals_made) as bigint) as referrals_made,
        cast(sum(converted_referrals) as bigint) as converted_referrals,
        cast(sum(referred_customers) as bigint) as referred_customers,
        sum(referred_customers_revenue) as referred_customers_revenue,
        sum(referred_customers_net_revenue) as referred_customers_net_revenue

    from customer_referrals
    group by 1

),

final as (

    select
        categories.loyalty_category,
        coalesce(counted.customers, 0) as customers,
        coalesce(counted.referrers, 0) as referrers,
        coalesce(counted.referrals_made, 0) as referrals_made,
        coalesce(counted.converted_referrals, 0) as converted_referrals,
        coalesce(counted.referred_customers, 0) as referred_customers,
        coalesce(counted.referred_customers_revenue, 0) as referred_customers_revenue,
        coalesce(counted.referred_customers_net_revenue, 0) as referred_customers_net_revenue,
        round(counted.referrers::numeric / nullif(counted.customers, 0), 4) as referral_rate,
        round(counted.referrals_made::numeric / nullif(counted.customers, 0), 4) as referrals_per_customer,
        round(counted.converted_referrals::numeric / nullif(counted.referrals_made, 0), 4) as conversion_rate

    from categories
    left join counted
        on categories.loyalty_category = counted.loyalty_category

)

select * from final
