"""How Airflow runs the project locally: its environment, `cem run` and `make airflow`."""
