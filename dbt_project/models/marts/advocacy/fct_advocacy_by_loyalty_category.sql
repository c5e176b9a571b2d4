{#-
    Do advocates behave differently, and what are they worth? One row per loyalty category
    (all four rows always exist), with the four advocate behaviours and value, as of the
    as-of date: every event (purchase, churn, referral, invitation, response) counts only on
    or before it.

    Customer columns group every dim_customers row once by dim_customers.loyalty_category
    (the NPS category of the customer's last LTR answer; 'unknown' without one):

    * repurchase:  repeat-purchase rate = customers with frequency >= 1 / customers with a
                   purchase (buyers);
    * more lines:  mean product lines beyond the first, and the share buying more than one
                   line, over buyers;
    * referral:    referral rate = referrers / customers, a referrer being a dim_customers
                   row whose first referral is on or before the as-of date: the rule of
                   fct_referral_rates_by_loyalty_category, cut at the as-of date;
    * value:       revenue and gross margin of purchases on or before the as-of date,
                   revenue per customer (all customers), churn rate = churned / buyers.

    Feedback groups INVITATIONS by the invitee's category when the invitation was sent
    (int_invitations_categorised_at_sending, shared with
    fct_survey_response_rates_by_loyalty_category): response rate = invitations answered
    (first response on or before the as-of date) / invitations sent on or before it. Not the
    current category: a customer has one only because they answered, which would push the
    'unknown' rate to 0 and the others up.
-#}

with

-- Every customer once, with what is counted of them (kept by customer, see there).
customer_behaviour as (

    select * from {{ ref('int_customers_advocate_behaviours') }}

),

invitations as (

    select * from {{ ref('int_invitations_categorised_at_sending') }}
    where sent_date <= {{ as_of_date() }}

),

categories as (

    select loyalty_category

    from (
        values ('promoter'), ('passive'), ('detractor'), ('unknown')
    ) as known_categories (loyalty_category)

),

-- Feedback by the invitee's category at sending, not by the customer's current one.
feedback_counted as (

    select
        loyalty_category_at_sending as loyalty_category,
        count(*) as invitations_sent,
        count(*) filter (where first_responded_date <= {{ as_of_date() }}) as invitations_answered

    from invitations
    group by 1

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
        coalesce(feedback_counted.invitations_sent, 0) as invitations_sent,
        coalesce(feedback_counted.invitations_answered, 0) as invitations_answered,
        coalesce(counted.churned_customers, 0) as churned_customers,
        round(counted.repeat_customers::numeric / nullif(counted.buyers, 0), 4) as repeat_purchase_rate,
        round(counted.additional_product_lines, 4) as mean_additional_product_lines,
        round(counted.multi_line_customers::numeric / nullif(counted.buyers, 0), 4) as multi_line_share,
        round(counted.referrers::numeric / nullif(counted.customers, 0), 4) as referral_rate,
        round(feedback_counted.invitations_answered::numeric / nullif(feedback_counted.invitations_sent, 0), 4) as response_rate,
        coalesce(counted.revenue, 0) as revenue,
        coalesce(counted.gross_margin, 0) as gross_margin,
        round(counted.revenue / nullif(counted.customers, 0), 2) as revenue_per_customer,
        round(counted.churned_customers::numeric / nullif(counted.buyers, 0), 4) as churn_rate,
        {{ as_of_date() }} as as_of_date

    from categories
    left join counted
        on categories.loyalty_category = counted.loyalty_category
    left join feedback_counted
        on categories.loyalty_category = feedback_counted.loyalty_category

)

select * from final
