"""Clean the census input and upload it into the warehouse (SQLite or PostgreSQL)."""
