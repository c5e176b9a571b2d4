"""Source systems (CRM, sales, surveys): contracts, clients and local stand-ins.

Never imports Airflow: DAG tasks pass connection details in.
"""
