"""Alembic migrations of the network database (linear history; run by ``onehop network init``).

Later parts add their own revisions after ``0001_network``: keep one head.
"""
