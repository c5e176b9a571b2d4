{#-
    What a data test reads (dbt's get_where_subquery, dispatched to this for PostgreSQL):
    the model, narrowed by the test's `where` config as dbt does it, and, for the row tests
    of the staging views (accepted_values, not_null), to the raw rows loaded after the end
    of the window the last published build tested (ops.mart_publications; see
    cem_warehouse.transform.staging_tests, which also says why no row is missed).

    The window is read from the warehouse when the test runs, not passed as a dbt var: a var
    that changes with every build makes dbt parse the whole project again each time (3 s of
    every build on this machine), where an unchanged project is parsed partially.
    Every row is tested with no recorded window (a first build), on --full-refresh, and with
    the var staging_tests_every_row (for `dbt test` by hand). A test that compares rows with
    each other (uniqueness) is never narrowed.
-#}
{% macro postgres__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set test_name = (model.get('test_metadata') or {}).get('name') -%}
    {%- if model.fqn[1] == 'staging' and test_name in ['accepted_values', 'not_null'] -%}
        {%- set loaded_after = staging_tests_loaded_after() -%}
        {%- if loaded_after -%}
            {%- set since -%}
                loaded_at > cast('{{ loaded_after }}' as timestamp) at time zone 'UTC'
            {%- endset -%}
            {%- set where = '(' ~ where ~ ') and ' ~ since if where else since -%}
        {%- endif -%}
    {%- endif -%}
    {%- if where -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{#- The end of the last publication's staging test window as UTC text; none when every row
    is to be tested. Only when the test runs (at parse time nothing is read). dbt may read
    the text back as a datetime; written without an offset, it prints the same either way. -#}
{% macro staging_tests_loaded_after() -%}
    {%- if not execute or flags.FULL_REFRESH or var('staging_tests_every_row', false) -%}
        {%- do return(none) -%}
    {%- endif -%}
    {%- set previous -%}
        select to_char(staging_tests_through at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')
        from ops.mart_publications
        order by publication_id desc
        limit 1
    {%- endset -%}
    {%- set rows = run_query(previous) -%}
    {%- do return(rows.columns[0].values()[0] if rows and rows.rows | length > 0 else none) -%}
{%- endmacro %}
