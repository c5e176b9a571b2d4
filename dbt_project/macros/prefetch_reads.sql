{#- Let a bitmap heap scan ask the disk for many pages at once (posix_fadvise) instead of
    one after the other. Incremental builds read a few hundred thousand scattered rows of
    large tables; on a machine whose page cache does not hold them (one that pages out
    memory left unused for a minute, or a warehouse larger than memory) each read waits
    for the disk. On the 1M-customer bench warehouse, with identity resolution's tables
    dropped from the page cache, its select (bitmap scans) took 15.2 s at the default (1)
    and 5.6-6.1 s at 256 (docs/operations/marts.md, "Reading from disk"). A server built
    without posix_fadvise refuses any value but 0: there the default stays. -#}
{% macro prefetch_reads(pages=256) -%}
do $prefetch$
begin
    perform set_config('effective_io_concurrency', '{{ pages | int }}', true);
exception when invalid_parameter_value then
    null;  -- no posix_fadvise on this server: reads are not prefetched
end
$prefetch$
{%- endmacro %}
