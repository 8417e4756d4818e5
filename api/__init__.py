"""The census filter API: a Litestar service over the warehouse query layer."""
