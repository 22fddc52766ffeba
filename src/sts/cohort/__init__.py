"""The cells of a run: the cohort's cell table, the users' local cohort, the ids rule and the manifest
(status, split and fold of each cell)."""
