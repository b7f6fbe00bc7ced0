"""SQL over the audit trail: the Athena table (trail.sql) and the views Athena and DuckDB both run (views.sql)."""
from pathlib import Path

HERE = Path(__file__).resolve().parent
