"""The census warehouse: schema, engine and the one query layer every other part uses."""
