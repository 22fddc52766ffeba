"""``sts predict``: one entry (``predict``) over one predictor per model kind (``cnn``, ``lgbm``,
``fusion``), each preparing a new recording as its model's training cells were; the per-cell figure
(``figure``)."""
