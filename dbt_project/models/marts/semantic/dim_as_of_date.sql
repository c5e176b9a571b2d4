{#-
    One row: the date the marts of this generation are computed as of, and where it came
    from (int_as_of_date has the rule). It is published with the marts, so analysts see the
    as-of date of the marts they are reading, and the views that add the columns moving with
    the as-of date (fct_customer_repurchase, fct_customer_churn, dim_customers) read it from
    their own generation: a view reading staging would show the next build's date before that build
    is published.
-#}

select
    as_of_date,
    resolved_from,
    latest_data_date

from {{ ref('int_as_of_date') }}
