{#-
    Post-hook of every model (dbt_project.yml): an incremental model's table gets each index
    its config declares and lacks. dbt creates a model's `indexes` only with its table, so an
    index added to an incremental model (`fct_support_interactions.customer_key`, stop 39)
    would otherwise exist only after a `--full-refresh`, and until then the models reading
    through it would scan instead. An index matches when it has the same columns in the same
    order and the same uniqueness, whatever its name: the catch-up's copies of a mart carry
    indexes named after the copy (cem_warehouse.transform.generations). A table and a view
    are built from scratch with their indexes: nothing to do. A unique index refused by
    duplicate rows fails the build with PostgreSQL's message naming the duplicated key.

    It also drops an index the config no longer declares when a declared one starts with
    its columns: a plain, non-partial index on a leading part of a declared index serves
    no lookup the declared one does not, and costs every write. So an index widened in a
    model's config (`fct_order_lines.customer_key`, stop 64) is replaced at the next build
    without a full refresh. Unique, partial and expression indexes are never dropped by
    that rule.

    And it drops an index dbt itself created from an earlier config (dbt names its indexes
    with an md5, 32 hex digits) that no declared index matches, unique or not, as a full
    refresh would: the purchase days' and churn gaps' unique index on the text
    purchase_day_id went at the next build when their config declared one unique index on
    (customer_key, purchase_date) instead (stop 65). Indexes named otherwise (the catch-up's
    copies, `create_index_if_missing`, an index made by hand) are left to the rule above.
-#}
{% macro create_missing_indexes() -%}
    {%- if execute and config.get('materialized') == 'incremental' and is_incremental() -%}
    {%- set declared = config.get('indexes') or [] -%}
    {%- for index in declared -%}
    {%- set columns = index['columns'] -%}
    {%- set unique = index.get('unique', false) %}
    do $create_missing_index$
    begin
        if not exists (
            select
            from pg_catalog.pg_index as existing
            where {{ index_is_on_columns('existing', columns, unique) }}
        ) then
            create {{ 'unique ' if unique }}index on {{ this }} ({{ columns | join(', ') }});
        end if;
    end
    $create_missing_index$;
    {%- endfor -%}
    {%- set declared_columns = declared | map(attribute='columns') | list -%}
    {%- set superseded = [] -%}
    {%- for index in declared -%}
    {%- for length in range(1, index['columns'] | length) -%}
    {%- set prefix = index['columns'][:length] -%}
    {%- if prefix not in declared_columns and prefix not in superseded -%}
    {%- do superseded.append(prefix) -%}
    {%- endif -%}
    {%- endfor -%}
    {%- endfor -%}
    {#- One pass drops both kinds: an undeclared index that dbt made (its md5 name), or a
        plain one on a leading part of a declared index (any name). -#}
    do $drop_undeclared_index$
    declare
        undeclared regclass;
    begin
        for undeclared in
            select existing.indexrelid
            from pg_catalog.pg_index as existing
            inner join pg_catalog.pg_class as index_class
                on index_class.oid = existing.indexrelid
            where existing.indrelid = cast('{{ this.include(database=false) }}' as regclass)
                and existing.indpred is null
                and existing.indexprs is null
                {%- for index in declared %}
                and not ({{ index_is_on_columns('existing', index['columns'], index.get('unique', false)) | indent(16) }})
                {%- endfor %}
                and (
                    index_class.relname ~ '^[0-9a-f]{32}$'
                    {%- for columns in superseded %}
                    or ({{ index_is_on_columns('existing', columns, false) | indent(20) }})
                    {%- endfor %}
                )
        loop
            execute format('drop index %s', undeclared);
        end loop;
    end
    $drop_undeclared_index$;
    {%- endif -%}
{%- endmacro %}


{#- A condition on a pg_index row: an index of this model's table on exactly `columns`, in
    that order, unique or not as `unique` says, not partial. -#}
{% macro index_is_on_columns(index, columns, unique) -%}
    {{ index }}.indrelid = cast('{{ this.include(database=false) }}' as regclass)
                and {{ index }}.indisunique = {{ 'true' if unique else 'false' }}
                and {{ index }}.indpred is null
                and {{ index }}.indnkeyatts = {{ columns | length }}
                {%- for column in columns %}
                and {{ index }}.indkey[{{ loop.index0 }}] = (
                    select attnum from pg_catalog.pg_attribute
                    where attrelid = {{ index }}.indrelid and attname = '{{ column }}'
                )
                {%- endfor %}
{%- endmacro %}


{#- Post-hook: an index dbt's `indexes` config cannot declare (on an expression, or partial),
    created once per table. Its name ends with the table's oid: a full refresh builds the new
    table while the old one, with its index, still exists, and a name of its own lets each
    have one. `expression` and `where` are SQL placed inside a string literal: no single
    quotes in them. -#}
{% macro create_index_if_missing(name, expression, where=none) -%}
    do $create_index_if_missing$
    begin
        execute format(
            'create index if not exists %I on {{ this.include(database=false) }} ({{ expression }}){{ " where " ~ where if where }}',
            '{{ name }}_' || cast(cast('{{ this.include(database=false) }}' as regclass) as oid)
        );
    end
    $create_index_if_missing$
{%- endmacro %}
