"""The evaluation report: metrics, figures and the photo-like robustness check of a model."""
