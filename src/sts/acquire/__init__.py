"""Real-data acquisition: Allen Cell Types (NWB v1) and DANDI 000020 (MIES NWB 2).

``http``: resumable, verified, atomic downloads with retries and byte accounting.
``allen``: the Allen Brain Map RMA API (cell list, sweep tables, NWB links).
``dandi_stream``: DANDI asset listing and range-read streaming of the two needed sweeps.
``labels``: the four study classes from metadata or the study's label file (``labels_cli``: ``sts labels``).
``marker``: the placeholder NWB file that carries a failed cell's exclusion reason.
"""
