"""cem-warehouse: a Customer Experience Management data warehouse.

All Python logic of the project lives in this package; DAG files under ``dags/`` are
configuration that call into it.
"""

__version__ = "0.1.0"
