{#-
    The watermark of an incremental fact: the newest raw `_loaded_at` (source_loaded_at) it
    has already taken in, read from the fact's OWN table. Under write-audit-publish the table
    a build starts from may be one or more generations old (marts_build holds the previous
    marts after a swap), so the watermark must come from {{ this }} and nowhere else: every
    raw row loaded after it is taken in again, whatever built the marts in between.
    '-infinity' for an empty table, so everything is new.

    Read once when the model runs and written into the SQL as a literal: as a subquery its
    value is unknown to the planner, which then expects a third of every table to be new and
    plans accordingly (minutes instead of seconds at a million customers).

    A load's rows are visible once a build reads a later _loaded_at: loads stamp _loaded_at
    after taking the raw-publish gate, which an incremental model holds for its whole
    transaction (wait_for_raw_publishes).
-#}
{% macro incremental_watermark() -%}
    {%- if is_incremental() -%}
        {{ watermark_of(this) }}
    {%- else -%}
        cast('-infinity' as timestamptz)
    {%- endif -%}
{%- endmacro %}


{#-
    The same for any incremental table of the generation being built, for a model that reads
    what another one holds (fct_orders reads the lines fct_order_lines stored): every raw row
    loaded up to that table's watermark is in it, whatever built it.
-#}
{% macro watermark_of(relation) -%}
    {%- if execute -%}
        {%- set query -%}
            select cast(coalesce(max(source_loaded_at), '-infinity'::timestamptz) as text) from {{ relation }}
        {%- endset -%}
        {%- set loaded_at = run_query(query).columns[0].values()[0] -%}
        cast('{{ loaded_at }}' as timestamptz)
    {%- else -%}
        cast('-infinity' as timestamptz)
    {%- endif -%}
{%- endmacro %}


{#-
    Whether `relation` (a staging model with a `loaded_at` column) has rows loaded after
    `watermark`, asked when the model runs. For a branch of an incremental scope that is
    rare but huge when it happens (a product's cost changes: every line of that product),
    the planner can only guess "a share of the table" and then plans every join of the
    build as a full scan. Leaving the branch out of the SQL on the days it is empty keeps
    the plan right; on the days it is not, it is there.
-#}
{% macro has_rows_loaded_since(relation, watermark) -%}
    {%- if execute -%}
        {%- set query -%}
            select exists (select from {{ relation }} where loaded_at > {{ watermark }})
        {%- endset -%}
        {{- return(run_query(query).columns[0].values()[0]) -}}
    {%- else -%}
        {{- return(true) -}}
    {%- endif -%}
{%- endmacro %}
