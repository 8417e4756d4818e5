"""Image export entry points under a short name (used by docker/png_smoke.py)."""

from explorer.image_export import export_jpg, export_png, exporter, png_to_jpg

__all__ = ["export_jpg", "export_png", "exporter", "png_to_jpg"]
