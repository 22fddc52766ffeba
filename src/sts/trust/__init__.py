"""How far a model's probabilities can be trusted: metrics, temperature calibration (and the workflow's
calibration stage, ``calibrate``), uncertainty and out-of-distribution scores."""
