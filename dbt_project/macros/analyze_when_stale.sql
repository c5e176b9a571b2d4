{#- Post-hook: ANALYZE {{ this }} when its statistics are missing or stale, by autovacuum's
    own rule: more than 50 + 10% of its rows changed since the last ANALYZE, counting the
    writes of this build (the transaction's own, not yet in pg_stat_all_tables).

    A table built in full is new and gets its statistics at once (the models after it plan
    with them, and PostgreSQL would otherwise guess). An incremental build changing a
    percent of a table does not need them again: ANALYZE samples the whole table each
    time (0.15-0.45 s per table at 1M customers, 4.6 s of a one-day build's thread time,
    most of it on the chain of models every later one waits for), and the statistics
    it would refresh barely move. The changes add up over builds, so a table is analyzed
    again once a tenth of it changed, also on a server where autovacuum is off or behind.
    PostgreSQL counts a transaction's writes after its own ANALYZE, so the build after a
    build in full analyzes once more (its rows all count as changed). -#}
{% macro analyze_when_stale() -%}
    do $analyze$
    begin
        if exists (
            select
            from pg_catalog.pg_class as relation
            left join pg_catalog.pg_stat_all_tables as stats
                on stats.relid = relation.oid
            where relation.oid = to_regclass('{{ this }}')
                and (
                    relation.reltuples < 0
                    or coalesce(stats.last_analyze, stats.last_autoanalyze) is null
                    or coalesce(stats.n_mod_since_analyze, 0)
                        + pg_catalog.pg_stat_get_xact_tuples_inserted(relation.oid)
                        + pg_catalog.pg_stat_get_xact_tuples_updated(relation.oid)
                        + pg_catalog.pg_stat_get_xact_tuples_deleted(relation.oid)
                        > 50 + 0.1 * relation.reltuples
                )
        ) then
            analyze {{ this }};
        end if;
    end
    $analyze$
{%- endmacro %}
