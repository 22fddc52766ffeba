"""Input and output shared by every stage: atomic writes, HDF5 helpers, bounded reading of untrusted
files, text cleaning for spreadsheets, thread limits. Imports nothing else of sts but ``sts.settings``."""
