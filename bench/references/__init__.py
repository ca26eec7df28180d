"""Reference servers the platform is measured against, each written the obvious way."""
