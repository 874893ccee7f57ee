"""lockbox_server: serves archives by HTTP Range. It never decrypts anything."""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
