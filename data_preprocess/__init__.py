"""Preprocessing CLI: agent trajectories and QA data → verl parquet with reference actions."""
