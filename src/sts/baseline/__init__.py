"""LightGBM baseline on electrophysiological (EP) features."""
