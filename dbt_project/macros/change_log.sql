{#-
    Per-customer intermediates that rebuild only the customers whose facts changed.

    A per-customer model (purchase days, product lines bought...) reads every row of a large
    fact for every customer, yet after a one-day delta only a few thousand customers have a
    row that changed. So:

    * an incremental fact replaces its rows with the strategy `delete_insert_logging_keys`,
      which first records in ops.mart_key_changes the `change_log_key` (customer_key) of
      every row it is about to replace and of every row it writes: a re-keyed order logs
      both the customer it left and the one it joined. A build of the fact in full logs
      one row with a null key (pre-hook `log_rebuilt_in_full`);
    * a per-customer model (strategy `replace_changed_keys`) recomputes, from the whole fact,
      the customers logged since its own last build plus those with an event that the
      moving as-of date lets in, deletes every row of those customers and inserts the new
      ones. It records how far it read in ops.mart_change_positions (post-hook
      `record_change_position`), in the same transaction as its rows, per physical table:
      a mart's two generations (marts_build and marts swap) each keep their own position.
      A reader can be a producer too (change_log_replaced_key): the purchase days log the
      customers they replaced for the churn gaps, identity resolution the customer keys an
      identifier left or joined, for dim_customers. A producer may log with each key the
      earliest date its change touched (change_log_replaced_from: the purchase days, the
      first purchase day they replaced or wrote), and a reader whose rows of a key before
      a date depend only on the key's rows before it (change_log_rows_from: the churn
      gaps) then recomputes and replaces that key's rows from that date on.

    It rebuilds everything (as a full refresh would) when it has no position yet, when a
    fact it reads was rebuilt in full since, when the as-of date moved back, or when its
    position is older than the log keeps (90 days).

    Why this equals a full refresh: such a model's rows for a customer depend only on that
    customer's input rows and the as-of date; every change to those rows is logged, and
    what the as-of date changes is found by comparison (dates falling due in the days it
    moved over, or a stored value against the new one).
    Under write-audit-publish the fact in marts_build may be a generation behind when a build
    starts, while the intermediates (not swapped) were computed from the newer generation,
    now in `marts`. Catching up re-derives every row changed since the older generation, a
    superset of those changed since the newer one, and logs for each the key it had in
    both generations and the key it gets. tests/integration/test_dbt_incremental_marts.py
    compares both intermediates with a full recompute after every day.
-#}

{% macro change_log_name(relation) -%}
    {{- relation.schema ~ '.' ~ relation.identifier -}}
{%- endmacro %}


{#- A reader's position belongs to its physical table ('<table name>#<oid>'): under
    write-audit-publish a mart's two generations swap schemas (the oid and name stay with
    the table), and each has read the log up to its own build. -#}
{% macro change_log_reader(relation) -%}
    '{{ relation.identifier }}#' || coalesce(cast(cast(to_regclass('{{ change_log_name(relation) }}') as oid) as text), 'new')
{%- endmacro %}


{#- Deletes the rows of `table` whose `column` names a reader (change_log_reader) whose
    table is gone: a full refresh replaced it, and the new table has an oid of its own. -#}
{% macro forget_replaced_readers(table, column) -%}
    delete from {{ table }} as kept
    where not exists (
        select from pg_catalog.pg_class as reader
        where cast(reader.oid as text) = split_part(kept.{{ column }}, '#', 2)
            and reader.relname = split_part(kept.{{ column }}, '#', 1)
    )
{%- endmacro %}


{#- How far {{ this }} has read the log of `producers` (model names) and whether it must
    rebuild everything. Read when the model runs; the same answer in its SQL, strategy and
    hooks, since the producers ran before it (dbt's order) and nothing else writes the log.
    A model whose rows do not depend on the as-of date sets change_log_as_of=false: moving
    the date back then does not rebuild it.

    A model names its producers once, in a list it passes here and to its config
    (change_log_producers=...); the macros below default to that config at run time. Called
    from the model's SQL, this macro also refs every producer while dbt parses the model:
    config values are not available then, and a producer read only through the log (the
    churn gaps read identity observations' log) must still be built before it. -#}
{% macro change_log_state(producers=none) %}
    {%- set state = {'full': true, 'from_id': 0, 'to_id': 0, 'previous_as_of': none} -%}
    {%- if not execute -%}
        {#- parsing: record the refs (see above) -#}
        {%- do producer_names(producers) -%}
        {{- return(state) -}}
    {%- endif -%}
    {#- A build in full reads nothing; nor does a unit test (no `this`, refs are fixtures). -#}
    {%- if this is none or not is_incremental() -%}
        {{- return(state) -}}
    {%- endif -%}
    {%- set names = producer_names(producers) -%}
    {%- set query -%}
        with position as (
            select change_id, as_of_date, built_at
            from ops.mart_change_positions
            where consumer = {{ change_log_reader(this) }}
        )
        select
            (select change_id from position),
            (select coalesce(max(change_id), 0) from ops.mart_key_changes where producer in ({{ names | join(', ') }})),
            (select cast(as_of_date as text) from position),
            exists (
                select from ops.mart_key_changes
                where producer in ({{ names | join(', ') }})
                    and key_value is null
                    and change_id > coalesce((select change_id from position), 0)
            ),
            coalesce((select built_at < now() - interval '90 days' from position), true),
            {%- if config.get('change_log_as_of', true) %}
            (select as_of_date < (select as_of_date from position) from {{ ref('int_as_of_date') }})
            {%- else %}
            false
            {%- endif %}
    {%- endset -%}
    {%- set row = run_query(query).rows[0] -%}
    {%- do state.update({'from_id': row[0] or 0, 'to_id': row[1], 'previous_as_of': row[2]}) -%}
    {%- do state.update({'full': row[0] is none or row[3] or row[4] or (row[5] is true)}) -%}
    {{- return(state) -}}
{% endmacro %}


{#- The log names of `producers` (model names; by default the model's
    change_log_producers), as quoted SQL literals. A name with a suffix, 'fct_orders#rows',
    is that model's log of the unique keys of the rows a mart build wrote
    (delete_insert_logging_keys). -#}
{% macro producer_names(producers=none) %}
    {%- set producers = producers if producers is not none else config.require('change_log_producers') -%}
    {%- set names = [] -%}
    {%- for producer in producers -%}
        {%- set model_and_log = producer.split('#') -%}
        {%- set suffix = ('#' ~ model_and_log[1]) if model_and_log | length > 1 else '' -%}
        {%- do names.append("'" ~ change_log_name(ref(model_and_log[0])) ~ suffix ~ "'") -%}
    {%- endfor -%}
    {{- return(names) -}}
{% endmacro %}


{#- A select of `keys` (a select whose first column is key_value, or the body of a `call`
    block), distinct and sorted, to filter a column by with `in (...)`. The planner then
    joins the keys as they come (`offset 0` keeps the subquery whole) and probes the
    column's index in key order: leaf after leaf, and in a table stored in that order (the
    churn gaps) page after page. Given the keys as they were, it hashed them to make them
    distinct and probed in the hash's order, one leaf page fetched at random per key.
    After three days' delta at 1M customers the nine models reading their customers this
    way took 7.6 s for their selects against 9.0 s, none slower (each alone, two or three
    runs, rolled back; docs/operations/marts.md, "Stop 61"). Not `= any(array(...))`: the
    planner counts an array as ten elements, and the churn assessment then joined its
    customers' rows in nested loops (25-27 s instead of 0.8 s). -#}
{% macro keys_in_order(keys=none) -%}
    select distinct key_value from (
        {{ (keys if keys is not none else caller()) | trim | indent(8) }}
    ) as keys
    order by key_value
    offset 0
{%- endmacro %}


{#- A model's filter to its customers in scope (the CTE `customers_in_scope`, a select of
    changed_keys_since_last_build) on `column`, in key order (keys_in_order); nothing in a
    build in full, which reads every row. -#}
{% macro where_in_scope(state, column='customer_key') -%}
    {%- if not state.full %}
    where {{ column }} in ({{ keys_in_order('select key_value from customers_in_scope') }})
    {%- endif %}
{%- endmacro %}


{#- The same filter as one sorted array (`= any(array(...))`), which the column's index
    takes in key order, for a model that also turns nested loops off (pre-hook): the
    planner guesses the change log's keys at a few dozen when it holds tens of thousands,
    and a model whose later steps join CTE scans of its customers may then join them in
    nested loops (fct_customer_churn_stored, int_purchase_gaps_assessed_for_churn,
    dim_customers_stored). -#}
{% macro where_in_scope_by_array(state, column='customer_key') -%}
    {%- if not state.full %}
    where {{ column }} = any(array(select distinct key_value from customers_in_scope order by key_value))
    {%- endif %}
{%- endmacro %}


{#- The keys logged by `producers` since {{ this }} last read the log (a select of one
    column); `state` is change_log_state's answer. A producer that logs several kinds of
    key can be read for the kind the model is keyed by: config change_log_key_patterns,
    {producer: regular expression} (identity observations log emails and accounts too,
    which are never a customer key; read in full, they tripled the keys a per-customer
    mart looked up, replaced and logged). -#}
{% macro changed_keys_since_last_build(state, producers=none, more_columns='') -%}
    select key_value{{ more_columns }}
    from ops.mart_key_changes
    where producer in ({{ producer_names(producers) | join(', ') }})
        and change_id > {{ state.from_id }}
        and change_id <= {{ state.to_id }}
        and key_value is not null
        {%- for producer, pattern in (config.get('change_log_key_patterns') or {}).items() %}
        and (producer <> '{{ change_log_name(ref(producer)) }}' or key_value ~ '{{ pattern }}')
        {%- endfor %}
{%- endmacro %}


{#- The keys logged since {{ this }} last read the log, each with the earliest date its
    logged changes touched: one row (key_value, rows_from) per key, rows_from null unless
    every entry of the key carries a date (changed_from, written by a producer with
    change_log_replaced_from). A key logged without a date has every row recomputed. -#}
{% macro changed_keys_from_dates(state, producers=none) -%}
    select
        key_value,
        case when bool_and(changed_from is not null) then min(changed_from) end as rows_from
    from (
        {{ changed_keys_since_last_build(state, producers, ', changed_from') | indent(8) }}
    ) as logged
    group by key_value
{%- endmacro %}


{#- The temporary table of a model configured with change_log_rows_from: one row
    (key_value, rows_from) per key in scope, which its pre-hook writes (from
    changed_keys_from_dates and its other reasons) for its select and for the strategy
    replace_changed_keys to read alike: rows_from null means every row of the key, a date
    its rows from that date on, 'infinity' none (int_purchase_gaps_assessed_for_churn,
    macros/churn_gaps_in_scope.sql). -#}
{% macro rows_from_scope() -%}
    {{- return(adapter.quote(this.identifier ~ '__rows_from')) -}}
{%- endmacro %}


{#- The names of an incremental strategy's arg_dict['dest_columns'], unquoted. -#}
{% macro dest_columns_names(dest_columns) -%}
    {{- return(dest_columns | map(attribute='name') | map('replace', '"', '') | list) -}}
{%- endmacro %}


{#- A condition: rows `kept` and `fresh` (aliases) hold the same value, null included, in
    every one of `dest_columns` (an incremental strategy's arg_dict['dest_columns']).
    `kept_prefix` names kept's columns when they were returned under other names (a
    delete's RETURNING, change_log_skip_added). -#}
{% macro rows_are_equal(kept, fresh, dest_columns, kept_prefix='') -%}
    {%- set names = dest_columns_names(dest_columns) -%}
    ({% for c in names %}{{ kept }}.{{ adapter.quote(kept_prefix ~ c) }}{{ ', ' if not loop.last }}{% endfor %})
        is not distinct from
        ({% for c in names %}{{ fresh }}.{{ adapter.quote(c) }}{{ ', ' if not loop.last }}{% endfor %})
{%- endmacro %}


{#- The rows recomputed into `temp` as a share of the rows `target` holds (its planner
    estimate; 1 when it has none yet). The temp table exists when a strategy renders. -#}
{% macro recomputed_share(temp, target) -%}
    {%- if not execute -%}
        {{- return(1) -}}
    {%- endif -%}
    {%- set counted = run_query(
        "select (select count(*) from " ~ temp ~ "), "
        ~ "(select reltuples from pg_class where oid = '" ~ target.include(database=False) ~ "'::regclass)"
    ) -%}
    {%- set recomputed, stored = counted.rows[0][0], counted.rows[0][1] -%}
    {{- return(recomputed / stored if stored and stored > 0 else 1) -}}
{%- endmacro %}


{#- Whether `relation` is a mart being built: one of the two generations of its table, which
    the catch-up after the swap brings up to date from the rows the build logged. -#}
{% macro is_mart_build(relation) -%}
    {{- return(relation.schema == var('marts_build_schema', 'marts_build')) -}}
{%- endmacro %}


{#- The other generation of a mart being built: its published table in `marts` (none for
    any other relation, and before the mart's first publication). -#}
{% macro published_generation(relation) -%}
    {%- if not is_mart_build(relation) -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set published = adapter.get_relation(database=relation.database, schema='marts', identifier=relation.identifier) -%}
    {{- return(published if published is not none and published != relation else none) -}}
{%- endmacro %}


{#- The published generation of a mart being built (published_generation) while it may
    hold rows this one lacks: the catch-up after the last publication did not record this
    table as caught up (or copied whole). It failed, was skipped, or the process stopped
    before recording it; the table is then a build behind the published one. None after a
    recorded catch-up, when the two are equal row for row
    (tests/integration/test_dbt_incremental_marts.py checks), so a model can leave the
    published generation unread; none for any other relation. -#}
{% macro published_generation_ahead(relation) -%}
    {%- set published = published_generation(relation) if execute else none -%}
    {%- if published is none -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set query -%}
        select coalesce((
            select (retired_generation ->> '{{ relation.identifier }}') ~ '^(caught up|copied in full)'
            from ops.mart_publications
            order by publication_id desc
            limit 1
        ), false)
    {%- endset -%}
    {{- return(none if run_query(query).columns[0].values()[0] else published) -}}
{%- endmacro %}


{#- Strategy of a fact: drop the re-derived rows that change nothing, refresh in place the
    columns no reader uses of rows loaded again (change_log_refresh_only), log the old and
    new key of every row replaced, then delete+insert.

    "Old" is taken from both generations of the fact. The table being caught up (in
    marts_build) can be a generation older than the one the readers last computed from,
    which is now published in `marts`: an order added by the last build and re-keyed by
    this one is not in the older table at all, and only `marts` knows the key it had. -#}
{% macro get_incremental_delete_insert_logging_keys_sql(arg_dict) %}
    {%- set keys = config.require('change_log_key') -%}
    {%- set keys = [keys] if keys is string else keys -%}
    {%- set unique_key = arg_dict['unique_key'] -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set temp = arg_dict['temp_relation'] -%}
    {%- set published = published_generation(target) -%}
    {%- set replaced = [target] + ([published] if published is not none else []) -%}
    {%- set key_columns = [unique_key] if unique_key is string else unique_key -%}
    {#- A scope is a superset of what changed (every order of a customer with a new one is
        renumbered, and most keep their number): a re-derived row equal to the row it would
        replace, in every generation it is in, changes nothing, so it is neither replaced nor
        logged. At 1M customers nine in ten rows of fct_orders' scope are such rows, and
        deleting and inserting them again (six indexes) cost more than deriving them.
        A model whose every re-derived row is one loaded since its watermark, and stores
        that load time, can hold no such row (change_log_drop_unchanged=false skips the
        comparison): the load time is later than every stored one. A condition on the
        re-derived row (change_log_drop_unchanged={'where': ..., alias `fresh`}) keeps the
        other rows replaced and logged even when equal. -#}
    {%- set drop_unchanged = config.get('change_log_drop_unchanged', true) %}
    {%- if drop_unchanged %}
    delete from {{ temp }} as fresh
    where {{ drop_unchanged.get('where', 'true') if drop_unchanged is mapping else 'true' }}
        {%- for relation in replaced %}
        and exists (
            select from {{ relation }} as kept
            where {% for key in key_columns %}kept.{{ key }} = fresh.{{ key }} and {% endfor %}
                {{ rows_are_equal('kept', 'fresh', arg_dict['dest_columns']) }}
        )
        {%- endfor %};
    {%- endif %}
    {%- set refresh_only = config.get('change_log_refresh_only') %}
    {%- if refresh_only %}
    {#- A row loaded again without a change that matters to any reader (an order whose
        status changed names the same email, account and time as before; its lines keep
        their product, price, customer and dates): its stored row takes the new values of
        the refreshed columns (the load time; an order's status too) in place, and no
        reader is told. Replaced and
        logged, a reloaded order put its email and account in identity resolution's scope,
        with every observation of both, and its customer in the scope of the per-customer
        models reading the lines: about half the orders of a one-day delta at 1M customers
        are such reloads.
        Config change_log_refresh_only: {'columns': [the refreshed columns], 'where': an
        optional condition on the re-derived row, alias `fresh`}. In a mart the row must
        be equal in both generations, and it is logged among the rows this build wrote
        (`#rows`), so the catch-up after the swap copies it into the other generation. -#}
    {%- if unique_key is not string %}
        {{ exceptions.raise_compiler_error("change_log_refresh_only updates rows in place by their unique_key: it needs a unique_key of one column") }}
    {%- endif %}
    {%- set refreshed = refresh_only['columns'] %}
    {%- set compared = [] %}
    {%- for column in arg_dict['dest_columns'] if column.name | replace('"', '') not in refreshed %}
        {%- do compared.append(column) %}
    {%- endfor %}
    with refreshed_rows as (
        update {{ target }} as kept
        set {% for column in refreshed %}{{ adapter.quote(column) }} = fresh.{{ adapter.quote(column) }}{{ ', ' if not loop.last }}{% endfor %}
        from {{ temp }} as fresh
        where kept.{{ unique_key }} = fresh.{{ unique_key }}
            and ({{ refresh_only.get('where', 'true') }})
            and {{ rows_are_equal('kept', 'fresh', compared) }}
            {%- if published is not none %}
            and exists (
                select from {{ published }} as other
                where other.{{ unique_key }} = fresh.{{ unique_key }}
                    and {{ rows_are_equal('other', 'fresh', compared) }}
            )
            {%- endif %}
        returning kept.{{ unique_key }}
    ){% if is_mart_build(target) %},

    logged_rows as (
        insert into ops.mart_key_changes (producer, key_value)
        select '{{ change_log_name(target) }}#rows', cast({{ unique_key }} as text) from refreshed_rows
    ){% endif %}

    delete from {{ temp }} as fresh
    where fresh.{{ unique_key }} in (select {{ unique_key }} from refreshed_rows);
    {%- endif %}
    {%- if is_mart_build(target) and unique_key is string %}
    {#- The rows this build wrote into a mart: after the swap they are exactly where the two
        generations differ, and the retired one is brought up to date from them
        (cem_warehouse.transform.generations). A log of its own (producer name + '#rows'):
        no reader lists it. -#}
    insert into ops.mart_key_changes (producer, key_value)
    select '{{ change_log_name(target) }}#rows', cast({{ unique_key }} as text) from {{ temp }};
    {%- endif %}
    {#- The replaced rows' keys come from the delete that removes them (RETURNING), and each
        row gives all its keys at once (a lateral list of them). Read again for the log, once
        per key, the identity observations' stored rows cost three probes per re-derived one
        and the delete a fourth: at 1M customers, after three days' delta, their log took
        1.30 s and the delete 0.19 s at the head of the chain, where nothing else runs
        (docs/operations/marts.md, "Stop 61"). -#}
    {%- set key_list -%}
        cross join lateral (values {% for key in keys %}(cast({{ key }} as text)){{ ', ' if not loop.last }}{% endfor %}) as keyed (key_value)
    {%- endset %}
    {#- Keys that one reader alone reads, left unlogged where a row cannot change that
        reader's row of them (config change_log_skip_added): {'reader': a model in this
        model's schema, 'reader_key': its unique key, 'keys': {change_log_key: a condition
        on an added row (alias `fresh`) and the reader's stored row of that key (alias
        `reader`), true when the added row cannot change it}}.
        * An added row (no stored row replaced) is not logged for a key when the reader
          has a row of that key and the condition holds.
        * A replaced row is logged for it (its old values may be what the reader kept),
          unless it equals its new version in every column: the model replaces such rows
          for its other keys (a CRM record loaded again for its segment is logged by
          customer key, for the churn gaps), and they change nothing the reader reads.
        Sound only when the reader is the only model reading those keys, derives its row
        of a key from this model's rows of that key alone, and the condition rules out
        every way an added row could move that row. Identity resolution is such a reader:
        after three days' delta at 1M customers it re-derived 91,762 identifiers, reading
        every observation of each, to change 15,254 (docs/operations/marts.md,
        "Stop 69"). -#}
    {%- set skip_added = config.get('change_log_skip_added') %}
    {%- set skip_reader = none %}
    {%- if skip_added %}
        {%- if is_mart_build(target) %}
            {{ exceptions.raise_compiler_error("change_log_skip_added is for a model with one generation: a row new to the generation of a mart being built may be in the published one, which its readers computed from") }}
        {%- endif %}
        {%- if unique_key is not string %}
            {{ exceptions.raise_compiler_error("change_log_skip_added tells added rows from replaced ones by unique_key: it needs a unique_key of one column") }}
        {%- endif %}
        {%- set skip_reader = adapter.get_relation(database=target.database, schema=target.schema, identifier=skip_added['reader']) %}
    {%- endif %}
    {#- The delete and insert dbt's delete+insert would run (get_delete_insert_merge_sql:
        the target under the alias its incremental_predicates name), with the delete's keys
        returned for the log. -#}
    {#- a replaced row equal to its new version in every column (a CRM record loaded again
        for a field observations do not carry) changes no reader's row either -#}
    {%- set same_as_replaced = rows_are_equal('replaced', 'fresh', arg_dict['dest_columns'], kept_prefix='replaced__') %}
    with deleted as (
        delete from {{ target }} as DBT_INTERNAL_DEST
        where {{ unique_key }} in (select {{ unique_key }} from {{ temp }})
        {%- for predicate in arg_dict.get('incremental_predicates') or [] %}
            and {{ predicate }}
        {%- endfor %}
        returning {% for key in keys %}cast({{ key }} as text) as key_{{ loop.index }}{{ ', ' if not loop.last }}{% endfor %}
        {%- if skip_reader is not none %},
            {{ unique_key }} as replaced_row_key,
            {% for c in dest_columns_names(arg_dict['dest_columns']) %}{{ adapter.quote(c) }} as {{ adapter.quote('replaced__' ~ c) }}{{ ', ' if not loop.last }}{% endfor %}
        {%- endif %}
    )
    insert into ops.mart_key_changes (producer, key_value)
    select '{{ change_log_name(target) }}', changed.key_value
    from (
        select keyed.key_value
        {%- if skip_reader is not none %}
        from deleted as replaced
        {#- every deleted row has its new version: the delete takes the temp table's keys #}
        inner join {{ temp }} as fresh
            on fresh.{{ unique_key }} = replaced.replaced_row_key
        cross join lateral (values
            {%- for key in keys %}
            (replaced.key_{{ loop.index }}, {{ same_as_replaced if key in skip_added['keys'] else 'false' }}){{ ',' if not loop.last }}
            {%- endfor %}
        ) as keyed (key_value, cannot_change_reader)
        where not keyed.cannot_change_reader
        {%- else %}
        from deleted
        cross join lateral (values {% for key in keys %}(deleted.key_{{ loop.index }}){{ ', ' if not loop.last }}{% endfor %}) as keyed (key_value)
        {%- endif %}
        {%- if published is not none %}
        union
        select keyed.key_value
        from {{ published }}
        {{ key_list }}
        where {{ unique_key }} in (select {{ unique_key }} from {{ temp }})
        {%- endif %}
        union
        select keyed.key_value
        {%- if skip_reader is not none %}
        from {{ temp }} as fresh
        left join deleted as replaced
            on replaced.replaced_row_key = fresh.{{ unique_key }}
        cross join lateral (values
            {%- for key in keys %}
            {%- set unchanging = skip_added['keys'].get(key) %}
            (
                cast(fresh.{{ key }} as text),
                {%- if unchanging %}
                case
                    when replaced.replaced_row_key is null then exists (
                        select from {{ skip_reader }} as reader
                        where reader.{{ skip_added['reader_key'] }} = cast(fresh.{{ key }} as text)
                            and ({{ unchanging }})
                    )
                    else {{ same_as_replaced | indent(8) }}
                end
                {%- else %}
                false
                {%- endif %}
            ){{ ',' if not loop.last }}
            {%- endfor %}
        ) as keyed (key_value, cannot_change_reader)
        where not keyed.cannot_change_reader
        {%- else %}
        from {{ temp }}
        {{ key_list }}
        {%- endif %}
    ) as changed
    where changed.key_value is not null;
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) %}
    insert into {{ target }} ({{ columns }})
    select {{ columns }} from {{ temp }}
{% endmacro %}


{#- Pre-hook of a fact: a build in full tells its readers to rebuild in full. Rendered before
    the build, so is_incremental() still describes the table the build starts from. -#}
{% macro log_rebuilt_in_full() -%}
    {%- if is_incremental() -%}
        select 'built incrementally: its strategy logs the keys it replaces'
    {%- else -%}
        insert into ops.mart_key_changes (producer, key_value) values ('{{ change_log_name(this) }}', null)
    {%- endif -%}
{%- endmacro %}


{#- Strategy of a per-customer model: every row of the recomputed customers is replaced,
    including customers left with no row at all (their last order was cancelled or re-keyed).
    With change_log_replaced_key set it is a producer too: it logs that column of every row
    it deletes and inserts (identity resolution logs the customer keys an identifier moved
    between), for the models that read it; a null key when it replaced everything.
    A model whose rows are never removed and whose producers log other keys than its own
    (invitations, from customer keys) sets change_log_names_this_key=false: its select
    finds the rows those keys touch, and only the rows it recomputed are replaced.
    With change_log_skip_unchanged=true (a model whose rows are unique) a recomputed row
    equal, column for column, to a stored row of the same key (and, for a mart, to the
    published generation's row too) changes nothing: the stored row stays, is not logged,
    and the new one is not inserted. A scope is a superset of what changed (every purchase
    day of a customer with a new one, every identifier of an account with a new order), and
    most of its rows come out as they were: at 1M customers identity resolution re-derived
    54k identifiers after a one-day delta, and replacing and logging them took 3.2 s on the
    chain of models every later one waits for. -#}
{% macro get_incremental_replace_changed_keys_sql(arg_dict) %}
    {%- set key = config.require('change_log_key') -%}
    {%- set producers = config.require('change_log_producers') -%}
    {%- set state = change_log_state(producers) -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set temp = arg_dict['temp_relation'] -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    {%- set replaced_key = config.get('change_log_replaced_key') -%}
    {#- One list over a union, never `in (...) or in (...)`: with the OR, PostgreSQL cannot
        hash both lists and probed the (unanalyzed) temp table once per target row; a 1M
        customer build spent more than six minutes in it. And `= any(array(...))`, not
        `in (...)`: the planner cannot count a union of a temp table and the change log, and
        with `in` it guessed tens of thousands of keys at some twenty rows each, so it
        hashed the keys and scanned the whole table (4.8M purchase days, 1.0-1.7 s, twice
        per build, for 24k customers). An array is planned as a short list of values,
        looked up in the key's index (26 ms for the same delete). That needs the index:
        the check below refuses a model without one. -#}
    {%- if not (config.get('indexes') or []) | selectattr('columns') | map(attribute='columns') | map('first') | select('equalto', key) | list %}
        {{ exceptions.raise_compiler_error("incremental_strategy replace_changed_keys needs an index that starts with change_log_key '" ~ key ~ "': add {'columns': ['" ~ key ~ "']} to the model's indexes") }}
    {%- endif %}
    {%- set in_scope -%}
        {{ key }} = any(array(
            select {{ key }} from {{ temp }}
            {%- if config.get('change_log_names_this_key', true) %}
            union
            {{ changed_keys_since_last_build(state, producers) | indent(12) }}
            {%- endif %}
        ))
    {%- endset -%}
    {%- set skip_unchanged = config.get('change_log_skip_unchanged', false) and not state.full -%}
    {%- set is_mart = is_mart_build(target) -%}
    {%- set replaced_from = config.get('change_log_replaced_from') -%}
    {%- set rows_from = config.get('change_log_rows_from') -%}
    {%- if (replaced_from or rows_from) and (is_mart or not config.get('change_log_skip_unchanged', false)) %}
        {{ exceptions.raise_compiler_error("change_log_replaced_from and change_log_rows_from are for a model with one generation (not a mart) and change_log_skip_unchanged=true") }}
    {%- endif %}
    {%- if rows_from and not state.full %}
    {#- Each key in scope with the date its changes start from, as the model's pre-hook
        wrote them for its select (rows_from_scope()): a key's rows before that date are as
        they were, so only its rows from that date on are compared and replaced. The
        recomputed rows before it repeat stored ones and leave first. -#}
    {%- set dated = rows_from_scope() %}
    {%- if execute and run_query("select to_regclass('pg_temp." ~ dated ~ "') is null").columns[0].values()[0] %}
        {{ exceptions.raise_compiler_error("change_log_rows_from needs the model's pre-hook to write " ~ dated ~ " (key_value, rows_from) for every key in scope, as macros/churn_gaps_in_scope.sql does: the strategy replaces the rows from those dates") }}
    {%- endif %}
    delete from {{ temp }} as fresh
    using {{ dated }} as dated
    where fresh.{{ key }} = dated.key_value
        and fresh.{{ rows_from }} < dated.rows_from;
    {%- endif %}
    {%- if skip_unchanged %}
    {%- set unchanged = adapter.quote(temp.identifier ~ '__unchanged') %}
    {%- set row_key = arg_dict['unique_key'] %}
    {%- if row_key is not string %}
        {{ exceptions.raise_compiler_error("change_log_skip_unchanged needs unique_key: the one column that identifies a row (indexed)") }}
    {%- endif %}
    {#- A mart's rows are in two generations, and the catch-up after the swap replaces, from
        the published one, exactly the keys this build logs: a row is left alone only when
        the published generation holds it as well, unchanged, so both stay equal without it. -#}
    {%- set published = published_generation(target) -%}
    {%- if is_mart and replaced_key != row_key %}
        {{ exceptions.raise_compiler_error("change_log_skip_unchanged on a mart needs change_log_replaced_key = unique_key: the catch-up replaces the keys it logs") }}
    {%- endif %}
    {#- A model with one generation (not a mart): its stored rows in scope are read once, by
        the key's index, and each is paired with the recomputed row of its unique key that
        repeats it, if any (the recomputed rows hashed). That one pass tells both what stays
        (a pair) and what goes (a stored row without one), so the delete finds its rows by
        their ctid. Before, the comparison probed the unique key's index once per
        recomputed row and the delete then read the same stored rows again by the key's
        index: at 1M customers, after three days' delta, the purchase days' 200k
        recomputed rows took 1.30 s to compare and 0.96 s to delete ("Stop 53"). In one pass
        the per-customer intermediates took about 0.7 s less thread time in a one-day build
        and 2 s less in a three-day build ("Stop 55"). -#}
    {#- A model's pre-hooks set planner settings for its select and they last the
        transaction: identity resolution turns index scans off to read scattered
        observations by bitmap, which made the comparison below hash every one of its 2M
        stored rows (1.2-2.2 s against 0.25-0.37 s for 54k rows at 1M customers). -#}
    set local enable_indexscan to default;
    {%- set one_pass = not is_mart %}
    {%- if one_pass %}
    {#- a hash join: the recomputed rows are an unindexed temporary table, so a nested loop
        would scan it once per stored row -#}
    set local enable_nestloop = off;
    set local enable_mergejoin = off;
    create temporary table {{ unchanged }} as
    select kept.kept_row, fresh.ctid as fresh_row
    from (
        select ctid as kept_row, *
        from {{ target }}
        where {{ in_scope }}
        {%- if rows_from %}
            and not exists (
                select from {{ dated }} as dated
                where dated.key_value = {{ target }}.{{ key }}
                    and {{ target }}.{{ rows_from }} < dated.rows_from
            )
        {%- endif %}
    ) as kept
    left join {{ temp }} as fresh
        on fresh.{{ row_key }} = kept.{{ row_key }}
        and {{ rows_are_equal('kept', 'fresh', arg_dict['dest_columns']) }};
    set local enable_nestloop to default;
    set local enable_mergejoin to default;
    {%- else %}
    {#- the stored rows that the recomputed ones repeat: found by the row's own unique key
        (one index probe each; by the customer key, half as fast at 1M customers), then
        compared column for column, in this generation and in the published one. -#}
    {#- One index probe per recomputed row, unless they are a large share of the table: the
        planner priced hashing the whole stored table below 92k probes of identity
        resolution's key index, after three days' delta at 1M customers (under auto_explain,
        1.62 s with all 2M stored rows hashed against 0.84 s by probes). Past a tenth of the
        table it keeps its choice. -#}
    {%- set probe_by_index = recomputed_share(temp, target) < 0.1 %}
    {%- if probe_by_index %}
    {#- on, whatever the model's pre-hook set for its select (dim_customers_stored turns
        nested loops off): with all three joins off the planner picks by cost alone -#}
    set local enable_nestloop to default;
    set local enable_hashjoin = off;
    set local enable_mergejoin = off;
    {%- endif %}
    create temporary table {{ unchanged }} as
    select fresh.ctid as fresh_row, kept.ctid as kept_row, fresh.{{ row_key }} as row_key
    from {{ temp }} as fresh
    inner join {{ target }} as kept
        on kept.{{ row_key }} = fresh.{{ row_key }}
        and {{ rows_are_equal('kept', 'fresh', arg_dict['dest_columns']) }}
    {%- if published is not none %}
    where exists (
        select from {{ published }} as other
        where other.{{ row_key }} = fresh.{{ row_key }}
            and {{ rows_are_equal('other', 'fresh', arg_dict['dest_columns']) }}
    )
    {%- endif %};
    {%- if probe_by_index %}
    set local enable_hashjoin to default;
    set local enable_mergejoin to default;
    {%- endif %}
    {%- endif %}
    {#- The recomputed rows that change nothing leave the temporary table by an array of
        their ctids, which a TID scan sorts: each page is read and written once. By `ctid in
        (...)` they came in the hash join's order, one page fetch each, and a temporary table
        larger than temp_buffers (8 MB) was read and written about once per row: after three
        days' delta at 1M customers the purchase days' 139k unchanged rows took 402 ms
        under auto_explain, and on a copy of their 189k rows (3.7k pages) 374-378 ms by
        `in`, 46-47 ms by array (docs/operations/marts.md, "Stop 61"). -#}
    delete from {{ temp }} where ctid = any(array(select fresh_row from {{ unchanged }} where fresh_row is not null));
    {%- endif %}
    {%- set replaced_rows -%}
        {%- if skip_unchanged and one_pass %}
        ctid = any(array(select kept_row from {{ unchanged }} where fresh_row is null))
        {%- else %}
        {{ in_scope }}
        {%- if skip_unchanged %}
        and ctid not in (select kept_row from {{ unchanged }})
        {%- endif %}
        {%- endif %}
    {%- endset -%}
    {%- if state.full %}
    {%- if replaced_key %}
    insert into ops.mart_key_changes (producer, key_value) values ('{{ change_log_name(target) }}', null);
    {%- endif %}
    {#- every row goes: truncate (in this transaction) leaves no dead rows behind -#}
    truncate {{ target }};
    {%- else %}
    {%- if replaced_key %}
    {#- The rows in scope are found once, by the delete, which hands their keys to the log:
        looked up again for the log (a key-index probe per key in scope, most finding an
        unchanged row it must pass over), they cost as much again, 0.26-0.66 s per model
        after three days' delta at 1M customers. -#}
    {%- if replaced_from %}
    {#- Each key with the earliest date among the rows it loses and gains: its rows before
        that date did not change (change_log_rows_from). -#}
    with deleted as (
        delete from {{ target }}
        where {{ replaced_rows }}
        returning {{ replaced_key }} as key_value, {{ replaced_from }} as changed_from
    )
    insert into ops.mart_key_changes (producer, key_value, changed_from)
    select
        '{{ change_log_name(target) }}',
        replaced.key_value,
        case when bool_and(replaced.changed_from is not null) then min(replaced.changed_from) end
    from (
        select key_value, changed_from from deleted
        union all
        select {{ replaced_key }}, {{ replaced_from }} from {{ temp }}
    ) as replaced
    where replaced.key_value is not null
    group by replaced.key_value;
    {%- else %}
    with deleted as (
        delete from {{ target }}
        where {{ replaced_rows }}
        returning {{ replaced_key }} as key_value
    )
    insert into ops.mart_key_changes (producer, key_value)
    select '{{ change_log_name(target) }}', replaced.key_value
    from (
        select key_value from deleted
        union
        select {{ replaced_key }} from {{ temp }}
        {%- if replaced_key == key and config.get('change_log_names_this_key', true) and is_mart %}
        {#- A mart's every key in scope, also one in neither the table it starts from nor
            its result: the other generation may hold a row of it (a customer created by
            the last build and re-keyed by this one), which the catch-up after the swap
            must remove (cem_warehouse.transform.generations). -#}
        union
        {{ changed_keys_since_last_build(state, producers) | indent(8) }}
        {%- endif %}
    ) as replaced
    where replaced.key_value is not null
    {%- if skip_unchanged and is_mart %}
        -- equal in both generations: nothing for the catch-up to do
        and replaced.key_value not in (select cast(row_key as text) from {{ unchanged }})
    {%- endif %};
    {%- endif %}
    {%- else %}
    delete from {{ target }}
    where {{ replaced_rows }};
    {%- endif %}
    {%- endif %}
    insert into {{ target }} ({{ columns }})
    select {{ columns }} from {{ arg_dict['temp_relation'] }}
{% endmacro %}


{#- Post-hook of a per-customer model: how far it has read, in the transaction of its rows.
    The log is trimmed elsewhere (trim_change_log). -#}
{% macro record_change_position(producers=none) -%}
    {#- The same newest entry the build read up to: the producers ran before this model. -#}
    insert into ops.mart_change_positions (consumer, change_id, as_of_date, built_at)
    select
        {{ change_log_reader(this) }},
        (
            select coalesce(max(change_id), 0) from ops.mart_key_changes
            where producer in ({{ producer_names(producers) | join(', ') }})
        ),
        {%- if config.get('change_log_as_of', true) %}
        (select as_of_date from {{ ref('int_as_of_date') }}),
        {%- else %}
        null,
        {%- endif %}
        now()
    on conflict (consumer) do update set
        change_id = excluded.change_id, as_of_date = excluded.as_of_date, built_at = excluded.built_at;
    {#- positions of tables a full refresh replaced (their oid is gone) hold nothing back -#}
    {{ forget_replaced_readers('ops.mart_change_positions', 'consumer') }}
{%- endmacro %}


{#- Post-hook of int_orders_changed_since_last_build, the first model of a build on the
    thread that waits while identity resolution runs: the log loses what every reader built
    in the last 90 days has read... -#}
{#- Until stop 65 every reader's record_change_position trimmed it, so the first of them,
    identity resolution, deleted the whole last build's log at the head of the chain, where
    the other thread has nothing to do: 538k rows in 0.72 s after three days' delta at 1M
    customers (docs/operations/marts.md, "Stop 65"). No reader has moved when this runs, so
    it deletes what that first reader did. A build selecting only some models may not run
    it: the log then waits for the next whole build. -#}
{% macro trim_change_log() -%}
    delete from ops.mart_key_changes
    where change_id <= (
        select min(change_id) from ops.mart_change_positions
        where built_at >= now() - interval '90 days'
    )
        {#- ...but never what the last publication has not yet been caught up with: after
            the swap, the retired generation is brought up to the published one from these
            entries (cem_warehouse.transform.generations). -#}
        and change_id <= (select coalesce(max(change_log_id), 0) from ops.mart_publications)
{%- endmacro %}
