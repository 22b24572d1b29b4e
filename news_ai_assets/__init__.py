"""Dagster asset graph that turns the Microsoft News Dataset (MIND) into daily, training-ready feature tables."""
