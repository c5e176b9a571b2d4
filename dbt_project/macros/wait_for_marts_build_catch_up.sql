{#-
    Pre-hook of every mart (dbt_project.yml) and of the models that read marts_build by name
    (int_orders_changed_since_last_build): wait until the rows the last publication left
    to catch up in marts_build are caught up. A build starts that catch-up beside its first
    models (cem_warehouse.transform.generations.catch_up_pending), which holds this lock
    exclusively meanwhile; taken shared here for the model's transaction, it does not hold
    back the other models, and costs nothing when no catch-up runs. The key is the one
    generations.CATCH_UP_LOCK takes.
-#}
{% macro wait_for_marts_build_catch_up() -%}
    select pg_advisory_xact_lock_shared(hashtext('cem_warehouse.marts_build_catch_up'))
{%- endmacro %}
