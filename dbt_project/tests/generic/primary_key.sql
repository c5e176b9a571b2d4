{#-
    The column is the model's primary key: no null and no value twice. One scan and one
    hash aggregate, where `unique` plus `not_null` scan the relation twice (on a view, they
    compute it twice). Fails with one row per duplicated key, and one for the nulls.
-#}
{% test primary_key(model, column_name) %}

select
    {{ column_name }} as key_value,
    count(*) as rows_with_key

from {{ model }}
group by 1
having count(*) > 1 or {{ column_name }} is null

{% endtest %}
