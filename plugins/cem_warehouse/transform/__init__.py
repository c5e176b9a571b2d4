"""dbt: the profile derived from the warehouse setting, and running the project."""
