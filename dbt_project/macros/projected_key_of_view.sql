{#- For a view: the table and column its key column reads, unchanged, through a single scan
    (EXPLAIN VERBOSE of `select <key> from <view>`), or the problem why not. -#}
{% macro projected_key_of_view(view, column_name) %}
    {%- set explained = run_query('explain (verbose, format json) select ' ~ adapter.quote(column_name) ~ ' from ' ~ view) -%}
    {%- set plan = fromjson(explained.rows[0][0])[0]['Plan'] -%}
    {%- set output = plan['Output'] -%}
    {#- A view PostgreSQL cannot flatten (it calls a volatile function) is read through a
        Subquery Scan, which passes rows on one for one; the scan below it outputs every
        column of the view, in order, so the key is the one at the view column's position. -#}
    {%- if plan['Node Type'] == 'Subquery Scan' and plan.get('Plans', []) | length == 1 -%}
        {%- set position = run_query("select attnum from pg_catalog.pg_attribute where attrelid = to_regclass('" ~ view ~ "') and attname = '" ~ column_name ~ "'").rows[0][0] -%}
        {%- set plan = plan['Plans'][0] -%}
        {%- set output = plan['Output'][position - 1 : position] -%}
    {%- endif -%}
    {%- set scans = ['Seq Scan', 'Index Scan', 'Index Only Scan', 'Bitmap Heap Scan'] -%}
    {%- set children = plan.get('Plans', []) | rejectattr('Node Type', 'equalto', 'Bitmap Index Scan') | list -%}
    {%- if plan['Node Type'] not in scans or children -%}
        {{- return({'problem': 'the view is not a plain projection of one table (its plan reads it through a ' ~ plan['Node Type'] ~ '): test it with primary_key'}) -}}
    {%- endif -%}
    {%- set prefix = plan['Alias'] ~ '.' -%}
    {%- if output | length != 1 or not output[0].startswith(prefix) or not (output[0][prefix | length:] | replace('_', '') | replace('"', '') ).isalnum() -%}
        {{- return({'problem': 'the view computes ' ~ column_name ~ ' (' ~ (output | join(', ')) ~ ') rather than passing a column through: test it with primary_key'}) -}}
    {%- endif -%}
    {{- return({'relation': plan['Schema'] ~ '.' ~ plan['Relation Name'], 'column': output[0][prefix | length:] | replace('"', '')}) -}}
{% endmacro %}
