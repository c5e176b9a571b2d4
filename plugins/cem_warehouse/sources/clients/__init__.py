"""Extractors: read one stream of one source into batches the loader can COPY.

They never import Airflow and never write to the warehouse; each yields
:class:`cem_warehouse.load.batch.IncomingBatch` objects.
"""
