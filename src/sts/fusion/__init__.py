"""Fusion of the trained models: a stacked logistic regression over their out-of-fold
probabilities (``stack``), saved as JSON (``model``) and served by ``sts predict`` (``sts.serve.fusion``)."""
