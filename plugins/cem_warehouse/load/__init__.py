"""Landing batches with COPY, publishing them to raw tables, quarantine and the load ledger."""
