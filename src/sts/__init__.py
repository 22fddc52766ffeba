"""STS: Spike Train Scalograms — classify cortical neurons from patch-clamp spike trains."""

__version__ = "0.1.0"
