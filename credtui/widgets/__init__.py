"""Widgets of credtui: each owns its messages (nested classes)."""
