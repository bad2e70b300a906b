"""Requests -> generated tokens: batched generate and the choice of engine that really runs."""
