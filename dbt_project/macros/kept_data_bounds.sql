{#-
    The bounds of the data int_as_of_date needs (the first and the latest order, the latest
    survey response and support contact, the first acquisition), kept from one build to the
    next instead of read from every raw row each time.

    Scanning the orders, responses, contacts and customers for their minimum or maximum took
    0.6-0.9 s and three processes (two parallel workers) on every build at 1M customers,
    while a day's delta adds a few tens of thousands of rows. int_as_of_date stores, beside
    each bound, the key of the row that holds it, and for each table the newest `loaded_at`
    it has read (its watermark). The next build reads, by the raw tables' `_loaded_at`
    indexes, only the rows loaded since, and compares them with the stored bound:

        bound now = the higher (or lower) of the stored bound and the rows loaded since

    That is exact whenever the row holding the stored bound is still there with the same
    value, loaded again since or not: every row not loaded since is as it was, and was not
    past the bound, so the bound still stands unless a row loaded since passes it. When the
    holder's value changed or the holder was removed, that one bound is read from every
    row, as it is on a first build and with --full-refresh. The check and the reads are one
    statement, taken under the raw-publish gate (wait_for_raw_publishes), so a load cannot
    change a row between them, and every row committed later carries a newer `loaded_at`
    than the watermark stored.
-#}

{#- The previous build's row of this model as SQL literals, or none when there is none to
    start from (first build, --full-refresh, or a table from before these columns). -#}
{% macro previous_data_bounds(columns) %}
    {%- if not execute or flags.FULL_REFRESH -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set existing = adapter.get_relation(this.database, this.schema, this.identifier) -%}
    {%- if existing is none or existing.type != 'table' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set stored = adapter.get_columns_in_relation(existing) | map(attribute='name') | list -%}
    {%- for column in columns if column not in stored -%}
        {{ return(none) }}
    {%- endfor -%}
    {%- set query -%}
        select {% for column in columns %}cast({{ column }} as text) as {{ column }}{{ ", " if not loop.last }}{% endfor %}
        from {{ existing }}
    {%- endset -%}
    {%- set rows = run_query(query).rows -%}
    {%- if rows | length != 1 -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set literals = {} -%}
    {%- for column in columns -%}
        {%- set value = rows[0][column] -%}
        {%- do literals.update({column: "null" if value is none else "'" ~ value ~ "'"}) -%}
    {%- endfor -%}
    {{ return(literals) }}
{% endmacro %}


{#- The rows of `relation` loaded since the stored watermark (all of them without one), with
    the columns the bounds need. -#}
{% macro rows_loaded_since(relation, columns, watermark) -%}
    select {{ columns | join(', ') }}, loaded_at
    from {{ relation }}
    {%- if watermark is not none %}
    where loaded_at > cast({{ watermark }} as timestamptz)
    {%- endif %}
{%- endmacro %}


{#- One bound as a one-row select of (holder_key, bound, read_in_full): the row of
    `relation` with the lowest (`bound.lowest`) or highest non-null `table.column`, ties
    broken by `table.key`. `table` and `bound` are int_as_of_date's descriptions of them;
    `stored` the previous build's literals by column (empty: read every row). -#}
{% macro data_bound(relation, table, bound, stored) -%}
    {%- set key, column, type, lowest = table.key, table.column, table.type, bound.lowest -%}
    {%- set loaded = table.name ~ '_loaded' -%}
    {%- set holder, value = stored.get(bound.holder), stored.get(bound.value) -%}
    {%- set watermark = stored.get(table.name ~ '_loaded_through') -%}
    {%- set direction = 'asc' if lowest else 'desc' -%}
    {%- if watermark is none -%}
    select {{ key }} as holder_key, {{ column }} as bound, true as read_in_full
    from {{ relation }}
    where {{ column }} is not null
    order by {{ column }} {{ direction }}, {{ key }} {{ direction }}
    limit 1
    {%- else -%}
    {#- whether the stored holder is still there with its value, loaded again since or not (an
        order's status changes reload the newest orders every day); no holder: no row had a
        value, and every row not loaded since still has none -#}
    {%- set holder_kept -%}
        ({{ holder }} is null or exists (
            select from {{ relation }}
            where {{ key }} = cast({{ holder }} as bigint)
                and {{ column }} = cast({{ value }} as {{ type }})
        ))
    {%- endset -%}
    {#- each branch filtered above its LIMIT, where the filter is decided once before the
        branch runs: below it, the parallel workers of the full read were started for
        nothing on every build -#}
    select holder_key, bound, false as read_in_full
    from (
        select holder_key, bound
        from (
            select {{ key }} as holder_key, {{ column }} as bound from {{ loaded }}
            union all
            select cast({{ holder }} as bigint), cast({{ value }} as {{ type }})
        ) as candidates
        where bound is not null
        order by bound {{ direction }}, holder_key {{ direction }}
        limit 1
    ) as moved
    where {{ holder_kept }}
    union all
    select holder_key, bound, true
    from (
        select {{ key }} as holder_key, {{ column }} as bound
        from {{ relation }}
        where {{ column }} is not null
        order by {{ column }} {{ direction }}, {{ key }} {{ direction }}
        limit 1
    ) as read_again
    where not {{ holder_kept }}
    {%- endif -%}
{%- endmacro %}


{#- The newest loaded_at read: the stored watermark moved to the rows loaded since;
    '-infinity' while a table has no rows, so that all of them are read next time. -#}
{% macro loaded_through(loaded, watermark) -%}
    coalesce(
        {%- if watermark is none %}
        (select max(loaded_at) from {{ loaded }}),
        {%- else %}
        greatest(cast({{ watermark }} as timestamptz), (select max(loaded_at) from {{ loaded }})),
        {%- endif %}
        cast('-infinity' as timestamptz)
    )
{%- endmacro %}
