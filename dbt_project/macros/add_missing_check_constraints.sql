{#- The CHECK constraints of `checks` ([name, condition] pairs) that {{ this }} lacks, added
    in one ALTER: validated by one scan when the table is new (after a build in full), a
    no-op on an incremental build, whose writes the constraints check as they happen. A
    constraint's name says what it checks (see the callers), so one of that name answers. -#}
{% macro add_missing_check_constraints(checks) -%}
    do $enforce$
    declare
        missing text[] := '{}';
    begin
    {%- for name, condition in checks %}
        if not exists (
            select from pg_catalog.pg_constraint
            where conrelid = to_regclass('{{ this }}') and conname = '{{ name }}'
        ) then
            missing := array_append(missing, $add$add constraint {{ adapter.quote(name) }} check ({{ condition }})$add$);
        end if;
    {%- endfor %}
        if cardinality(missing) > 0 then
            execute 'alter table {{ this }} ' || array_to_string(missing, ', ');
        end if;
    end
    $enforce$
{%- endmacro %}
