{#- Post-hook: ANALYZE {{ this }} when its statistics are missing or stale, by autovacuum's
    own rule: more than 50 + 10% of its rows changed since the last ANALYZE, counting the
    writes of this build. The rule is the warehouse function ops.analyze_when_stale
    (warehouse/bootstrap.py), shared with the copy of a mart into the retired generation.

    A table built in full is new and gets its statistics at once (the models after it plan
    with them, and PostgreSQL would otherwise guess), and the next build does not analyze
    it again for those rows. An incremental build changing a percent of a table does not
    need them again: ANALYZE samples the whole table each time (0.15-0.45 s per table at
    1M customers, 4.6 s of a one-day build's thread time, most of it on the chain of models
    every later one waits for), and the statistics it would refresh barely move. The
    changes add up over builds, so a table is analyzed again once a tenth of it changed,
    also on a server where autovacuum is off or behind. -#}
{% macro analyze_when_stale() -%}
    select ops.analyze_when_stale('{{ this }}')
{%- endmacro %}
