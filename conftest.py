"""Puts the repo root on sys.path so tests can import experiments.*."""
