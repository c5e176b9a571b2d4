{#- For a view: the table and column its key column reads, unchanged, through a single scan
    (EXPLAIN VERBOSE of `select <key> from <view>`), or the problem why not. -#}
{% macro projected_key_of_view(view, column_name) %}
    {%- set explained = run_query('explain (verbose, format json) select ' ~ adapter.quote(column_name) ~ ' from ' ~ view) -%}
    {%- set plan = fromjson(explained.rows[0][0])[0]['Plan'] -%}
    {%- set output = plan['Output'] -%}
    {#- A view PostgreSQL does not merge into its reader (one holding a WITH, say) shows as a
        Subquery Scan and is refused: joins through it cannot use the table's indexes. -#}
    {%- set scans = ['Seq Scan', 'Index Scan', 'Index Only Scan', 'Bitmap Heap Scan'] -%}
    {%- set children = plan.get('Plans', []) | rejectattr('Node Type', 'equalto', 'Bitmap Index Scan') | list -%}
    {%- if plan['Node Type'] not in scans or children -%}
        {{- return({'problem': 'the view is not a plain projection of one table (its plan reads it through a ' ~ plan['Node Type'] ~ '): write it as one select from one table, or test it with primary_key'}) -}}
    {%- endif -%}
    {%- set prefix = plan['Alias'] ~ '.' -%}
    {%- if output | length != 1 or not output[0].startswith(prefix) or not (output[0][prefix | length:] | replace('_', '') | replace('"', '') ).isalnum() -%}
        {{- return({'problem': 'the view computes ' ~ column_name ~ ' (' ~ (output | join(', ')) ~ ') rather than passing a column through: test it with primary_key'}) -}}
    {%- endif -%}
    {{- return({'relation': plan['Schema'] ~ '.' ~ plan['Relation Name'], 'column': output[0][prefix | length:] | replace('"', '')}) -}}
{% endmacro %}
