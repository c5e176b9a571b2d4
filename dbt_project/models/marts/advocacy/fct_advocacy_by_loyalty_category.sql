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

{#- Both parts read cells their producers' writes keep (macros/counted_by_triggers.sql):
    counting int_customers_advocate_behaviours (1M rows) and the invitations (2.5M) took
    this mart 0.72-1.10 s of every build at 1M customers, on the build's last stretch
    (docs/operations/marts.md, "Stop 66"). -#}

with

-- Every customer once, counted per category (the cells of int_customers_advocate_behaviours).
counted as (

    select
        loyalty_category,
        customers,
        buyers,
        repeat_customers,
        multi_line_customers,
        referrers,
        churned_customers,
        -- the mean over the customers who bought, as avg() over their rows would give it
        additional_product_lines::numeric / nullif(customers_with_product_lines, 0)
        as additional_product_lines,
        revenue,
        gross_margin

    from {{ ref('int_customers_counted_by_loyalty_category') }}

),

categories as (

    select loyalty_category

    from (
        values ('promoter'), ('passive'), ('detractor'), ('unknown')
    ) as known_categories (loyalty_category)

),

-- Feedback by the invitee's category at sending, not by the customer's current one: the
-- invitations sent on or before the as-of date, and of them those first answered by then.
feedback_counted as (

    select
        loyalty_category_at_sending as loyalty_category,
        cast(sum(invitations) as bigint) as invitations_sent,
        cast(coalesce(
            sum(invitations) filter (where first_responded_date <= {{ as_of_date() }}), 0
        ) as bigint) as invitations_answered

    from {{ ref('int_invitations_counted_by_day') }}
    where sent_date <= {{ as_of_date() }}
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
