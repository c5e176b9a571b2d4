{#-
    Counts kept by the producer's own writes.

    A monthly mart that counts a per-customer table (the cohorts over 4.8M purchase days,
    the churn events over as many churn gaps, the response rates over 2.5M invitations at
    1M customers) read every row on every build to produce a few hundred cells, 0.7-2.4 s
    each, although a one-day delta changes a few tens of thousands of those rows. A counted model stores the cells instead, and the
    producer keeps them: statement triggers on the producer's table (transition tables, so
    one pass per statement, not per row) add the cells of the rows each statement inserts
    and take away those of the rows it deletes, in the producer's own transaction. The
    counts therefore always match the producer's rows, whichever statement changed them
    (its incremental strategy, a rebuild in full by truncate, a fix by hand).

    A counted model:
    * sets `materialized='incremental'`, `incremental_strategy='kept_by_producer_triggers'`,
      `unique_key` (a cell key computed from the grouping columns, never null),
      `counted_from` (the producer model's name) and `counted_measures` (additive columns;
      the first counts rows, and a cell whose count falls to 0 is removed, as a full
      recompute would not have it);
    * writes its counting select once, over `__counted_rows__`, passes it as the config
      `counted_select` (the triggers count the rows of each statement with it) and renders
      it with `counted_rows(counting, ref(producer))`: in full over the producer when the
      table is built, and no rows at all when the producer's triggers have kept it (its
      build then costs nothing);
    * has the post-hook `keep_counts_by_triggers()`, which marks the cell key and the
      measures NOT NULL, replaces the trigger function after every build and creates the
      triggers where they are missing.

    When the producer's table was replaced (a --full-refresh of it alone drops its triggers)
    the next build finds no triggers and recounts in full. A cell that a delete would take
    below zero, or that is missing, means the counts no longer match: the trigger raises,
    naming the model to rebuild, and the producer's statement fails with it.
-#}

{#- The producer's relation, at run time (while dbt parses, config holds no values yet; the
    model's own ref() records the dependency). -#}
{% macro counted_producer() -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {{ return(ref(config.require('counted_from'))) }}
{%- endmacro %}


{% macro counts_trigger_prefix() -%}
    {{ return('keeps_' ~ this.identifier) }}
{%- endmacro %}


{#- How many of this model's four triggers the producer's table carries (0 while dbt parses). -#}
{% macro producer_trigger_count() %}
    {%- if not execute -%}
        {{ return(0) }}
    {%- endif -%}
    {%- set found = run_query(
        "select count(*) from pg_catalog.pg_trigger where not tgisinternal"
        ~ " and tgrelid = to_regclass('" ~ counted_producer() ~ "')"
        ~ " and tgname like '" ~ counts_trigger_prefix() ~ "\\_%'"
    ) -%}
    {{ return(found.columns[0].values()[0] | int) }}
{% endmacro %}


{#- True when an incremental build finds the producer carrying all four triggers: the counts
    are current. -#}
{% macro counts_kept_by_triggers() %}
    {#- a unit test has no `this` (its refs are fixtures): it counts its given rows -#}
    {%- if not execute or this is none or not is_incremental() -%}
        {{ return(false) }}
    {%- endif -%}
    {{ return(producer_trigger_count() == 4) }}
{% endmacro %}


{#- The line a select that counts nothing starts with: the strategy and the post-hook read
    the decision from the compiled select rather than asking the catalog again, so all three
    act on one answer. -#}
{% macro counts_kept_marker() -%}
    {{ return('-- counts kept by the triggers on the producer: nothing to count') }}
{%- endmacro %}


{% macro counts_were_kept() -%}
    {{ return(counts_kept_marker() in (model.compiled_code or '')) }}
{%- endmacro %}


{#- The model's select: its counting over the producer, or nothing to insert when the
    producer's triggers kept the counts (the strategy below then writes nothing). -#}
{% macro counted_rows(counting, producer) -%}
    {%- if counts_kept_by_triggers() -%}
{{ counts_kept_marker() }}
select * from (
    {{ counting | replace('__counted_rows__', producer | string) | indent(4) }}
) as counted
where false
    {%- else -%}
{{ counting | replace('__counted_rows__', producer | string) }}
    {%- endif -%}
{%- endmacro %}


{#- Strategy: replace every cell by the temp table's when the select counted in full (the
    triggers were missing); otherwise the triggers have already written this build's
    changes and there is nothing to do. -#}
{% macro get_incremental_kept_by_producer_triggers_sql(arg_dict) %}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    {%- if counts_were_kept() %}
    select 'counts kept by the triggers on {{ counted_producer() }}'
    {%- else %}
    delete from {{ arg_dict['target_relation'] }};
    insert into {{ arg_dict['target_relation'] }} ({{ columns }})
    select {{ columns }} from {{ arg_dict['temp_relation'] }}
    {%- endif %}
{% endmacro %}


{#- Post-hook: the cell key and every measure NOT NULL (a null measure would make its cell
    null for good: the triggers add to it and take from it), the trigger function (replaced
    after every build) and the producer's four statement triggers (insert, delete, update,
    truncate), created when missing. -#}
{% macro keep_counts_by_triggers() -%}
    {%- set producer = counted_producer() -%}
    {%- set key = config.require('unique_key') -%}
    {%- set measures = config.require('counted_measures') -%}
    {%- set function = adapter.quote(this.schema) ~ '.' ~ adapter.quote(this.identifier ~ '__keep') -%}
    {%- set prefix = counts_trigger_prefix() -%}
    {%- set counting_sql = config.require('counted_select') -%}
{#- (while dbt parses, config holds no values yet) -#}
{%- if execute %}
{{ set_not_null([key] + measures) }};
{%- endif %}
create or replace function {{ function }}() returns trigger
language plpgsql as $keep$
declare
    missing bigint;
begin
    -- a counted table dropped since (its model removed) leaves the producer's writes alone;
    -- built again, it is counted in full
    if to_regclass('{{ this }}') is null then
        return null;
    end if;
    if tg_op = 'TRUNCATE' then
        delete from {{ this }};
        return null;
    end if;
    if tg_op in ('INSERT', 'UPDATE') then
        insert into {{ this }} as kept
        select * from (
            {{ counting_sql | replace('__counted_rows__', 'added_rows') | indent(12) }}
        ) as added
        on conflict ({{ key }}) do update set
            {%- for measure in measures %}
            {{ measure }} = kept.{{ measure }} + excluded.{{ measure }}{{ ',' if not loop.last }}
            {%- endfor %};
    end if;
    if tg_op in ('DELETE', 'UPDATE') then
        with removed as (
            {{ counting_sql | replace('__counted_rows__', 'removed_rows') | indent(12) }}
        ),
        taken as (
            update {{ this }} as kept set
                {%- for measure in measures %}
                {{ measure }} = kept.{{ measure }} - removed.{{ measure }}{{ ',' if not loop.last }}
                {%- endfor %}
            from removed
            where kept.{{ key }} = removed.{{ key }}
            returning kept.{{ key }}, kept.{{ measures[0] }}
        )
        select count(*) filter (where taken.{{ key }} is null or taken.{{ measures[0] }} < 0)
        into missing
        from removed
        left join taken on taken.{{ key }} = removed.{{ key }};
        if missing > 0 then
            raise exception '% no longer matches %: % of its cells are missing or would fall below zero; rebuild it with `dbt build --full-refresh --select %`',
                '{{ this }}', '{{ producer }}', missing, '{{ this.identifier }}';
        end if;
        delete from {{ this }} where {{ measures[0] }} = 0;
    end if;
    return null;
end
$keep$
{#- The triggers only where missing: dropping one locks the producer against its readers
    (an ACCESS EXCLUSIVE lock), which other models may hold at this point of a build. The
    function above is replaced in place, so a changed counting select takes effect. -#}
{%- set present = 4 if counts_were_kept() else producer_trigger_count() %}
{%- if present != 4 %};
{%- if present > 0 %}
drop trigger if exists {{ prefix }}_insert on {{ producer }};
drop trigger if exists {{ prefix }}_delete on {{ producer }};
drop trigger if exists {{ prefix }}_update on {{ producer }};
drop trigger if exists {{ prefix }}_truncate on {{ producer }};
{%- endif %}
create trigger {{ prefix }}_insert after insert on {{ producer }}
    referencing new table as added_rows for each statement execute function {{ function }}();
create trigger {{ prefix }}_delete after delete on {{ producer }}
    referencing old table as removed_rows for each statement execute function {{ function }}();
create trigger {{ prefix }}_update after update on {{ producer }}
    referencing old table as removed_rows new table as added_rows
    for each statement execute function {{ function }}();
create trigger {{ prefix }}_truncate after truncate on {{ producer }}
    for each statement execute function {{ function }}()
{%- endif %}
{%- endmacro %}
