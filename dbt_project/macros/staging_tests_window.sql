{#-
    What a data test reads (dbt's get_where_subquery, dispatched to this for PostgreSQL):
    the model, narrowed by the test's `where` config as dbt does it, and, for the row tests
    of the staging views (accepted_values, not_null), to the raw rows loaded after
    var('staging_tests_loaded_after'): the end of the window the last published build
    tested (cem_warehouse.transform.staging_tests, which also says why no row is missed).
    Without the var (a full refresh, a first build, `dbt build` by hand) every row is
    tested. A test that compares rows with each other (uniqueness) is never narrowed.
-#}
{% macro postgres__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set loaded_after = var('staging_tests_loaded_after', '') -%}
    {%- set test_name = (model.get('test_metadata') or {}).get('name') -%}
    {%- if loaded_after and model.fqn[1] == 'staging' and test_name in ['accepted_values', 'not_null'] -%}
        {%- set since -%}
            loaded_at > cast('{{ loaded_after | replace("'", "''") }}' as timestamptz)
        {%- endset -%}
        {%- set where = '(' ~ where ~ ') and ' ~ since if where else since -%}
    {%- endif -%}
    {%- if where -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
