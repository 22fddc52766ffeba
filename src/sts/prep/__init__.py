"""Per-cell preparation: the two sweeps of a cell (selection, spikes, QC, resampling), their scalogram
and its file; the preparation of a new recording for ``sts predict`` (``prepared``)."""
