{#-
    Do advocates behave differently, and what are they worth? One row per loyalty category
    (dim_customers.loyalty_category: the NPS category of the customer's last LTR answer;
    'unknown' for customers who never gave one, so nobody is dropped; all four rows always
    exist), with the four advocate behaviours and value, as of the as-of date:

    * repurchase:  repeat-purchase rate = customers with frequency >= 1 / customers with a
                   purchase (buyers);
    * more lines:  mean product lines beyond the first, and the share buying more than one
                   line, over buyers;
    * referral:    referral rate = referrers (a referral recorded on or before the as-of
                   date) / customers;
    * feedback:    response rate = invitations answered / invitations sent, both on or before
                   the as-of date, of the customers in the category;
    * value:       revenue and gross margin of purchases on or before the as-of date,
                   revenue per customer (all customers), churn rate = churned / buyers.
-#}

with

customers as (

    select * from {{ ref('dim_customers') }}

),

repurchase as (

    select * from {{ ref('fct_customer_repurchase') }}

),

churn as (

    select * from {{ ref('fct_customer_churn') }}

),

referrals as (

    select * from {{ ref('fct_referrals') }}

),

invitations as (

    select * from {{ ref('stg_surveys__invitations') }}

),

responses as (

    select * from {{ ref('stg_surveys__responses') }}

),

identities as (

    select * from {{ ref('int_customers_resolved_across_sources') }}
    where identifier_type = 'email'

),

categories as (

    select loyalty_category

    from (
        values ('promoter'), ('passive'), ('detractor'), ('unknown')
    ) as known_categories (loyalty_category)

),

referrers as (

    select distinct referrer_customer_key as customer_key

    from referrals
    where referred_date <= {{ as_of_date() }}
        and referrer_customer_key is not null

),

answered_invitations as (

    select distinct invitation_id

    from responses
    where responded_date <= {{ as_of_date() }}
        and invitation_id is not null

),

invitations_summed as (

    select
        identities.customer_key,
        count(*) as invitations_sent,
        count(answered_invitations.invitation_id) as invitations_answered

    from invitations
    inner join identities
        on invitations.respondent_email = identities.identifier
    left join answered_invitations
        on invitations.invitation_id = answered_invitations.invitation_id
    where invitations.sent_date <= {{ as_of_date() }}
    group by 1

),

customer_behaviour as (

    select
        coalesce(customers.loyalty_category, 'unknown') as loyalty_category,
        customers.customer_key,
        repurchase.frequency,
        repurchase.product_lines_bought,
        coalesce(invitations_summed.invitations_sent, 0) as invitations_sent,
        coalesce(invitations_summed.invitations_answered, 0) as invitations_answered,
        coalesce(repurchase.revenue, 0) as revenue,
        coalesce(repurchase.gross_margin, 0) as gross_margin,
        repurchase.customer_key is not null as is_buyer,
        referrers.customer_key is not null as is_referrer,
        coalesce(churn.is_churned, false) as is_churned

    from customers
    left join repurchase
        on customers.customer_key = repurchase.customer_key
    left join churn
        on customers.customer_key = churn.customer_key
    left join referrers
        on customers.customer_key = referrers.customer_key
    left join invitations_summed
        on customers.customer_key = invitations_summed.customer_key

),

counted as (

    select
        loyalty_category,
        count(*) as customers,
        count(*) filter (where is_buyer) as buyers,
        count(*) filter (where frequency >= 1) as repeat_customers,
        count(*) filter (where product_lines_bought > 1) as multi_line_customers,
        avg(product_lines_bought - 1) as additional_product_lines,
        count(*) filter (where is_referrer) as referrers,
        cast(sum(invitations_sent) as bigint) as invitations_sent,
        cast(sum(invitations_answered) as bigint) as invitations_answered,
        count(*) filter (where is_churned) as churned_customers,
        sum(revenue) as revenue,
        sum(gross_margin) as gross_margin

    from customer_behaviour
    group by 1

),

final as (

    select
        categories.loyalty_category,
        coalesce(counted.customers, 0) as customers,
        coalesce(counted.buyers, 0) as buyers,
        coalesce(counted.repeat_customers, 0) as repeat_customers,
        coalesce(counted.multi_line_customers, 0) as multi_line_customers,
        coalesce(counted.referrers, 0) as referrers,
        coalesce(counted.invitations_sent, 0) as invitations_sent,
        coalesce(counted.invitations_answered, 0) as invitations_answered,
        coalesce(counted.churned_customers, 0) as churned_customers,
        round(counted.repeat_customers::numeric / nullif(counted.buyers, 0), 4) as repeat_purchase_rate,
        round(counted.additional_product_lines, 4) as mean_additional_product_lines,
        round(counted.multi_line_customers::numeric / nullif(counted.buyers, 0), 4) as multi_line_share,
        round(counted.referrers::numeric / nullif(counted.customers, 0), 4) as referral_rate,
        round(counted.invitations_answered::numeric / nullif(counted.invitations_sent, 0), 4) as response_rate,
        coalesce(counted.revenue, 0) as revenue,
        coalesce(counted.gross_margin, 0) as gross_margin,
        round(counted.revenue / nullif(counted.customers, 0), 2) as revenue_per_customer,
        round(counted.churned_customers::numeric / nullif(counted.buyers, 0), 4) as churn_rate,
        {{ as_of_date() }} as as_of_date

    from categories
    left join counted
        on categories.loyalty_category = counted.loyalty_category

)

select * from final
