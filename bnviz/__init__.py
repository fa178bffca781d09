"""bnviz: a small, exact numpy engine for MLPs with and without Batch Normalization."""
