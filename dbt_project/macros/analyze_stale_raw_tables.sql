{#-
    ANALYZE the raw tables whose planner statistics are missing or stale (more than 10% of
    rows changed since the last analyze). The incremental facts filter raw tables on
    _loaded_at: without statistics PostgreSQL guesses a third of each table is new and picks
    plans that take minutes instead of seconds (seen at 1M customers on a server with
    autovacuum off, or before autovacuum caught up with a bulk load). Cheap when nothing is
    stale. Run as a pre-hook of int_customers_resolved_across_sources, the first model of a
    build that reads the big raw tables. (Better done by the loader after each publish.)
-#}
{% macro analyze_stale_raw_tables() -%}
    {%- if execute -%}
        {%- set query -%}
            select format('%I.%I', schemaname, relname)
            from pg_stat_user_tables
            where schemaname = 'raw'
                and (
                    (last_analyze is null and last_autoanalyze is null)
                    or n_mod_since_analyze > 0.1 * greatest(n_live_tup, 1)
                )
        {%- endset -%}
        {%- set stale = run_query(query).columns[0].values() -%}
        {%- for table in stale %}analyze {{ table }};{% endfor -%}
        {%- if not stale %}select 1{% endif -%}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
