"""Screens of credtui: top-level ones replace each other, modals return typed results."""
