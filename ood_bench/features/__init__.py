"""Structure features used to build splits (Orbital-Field Matrix for the MatBench OOD folds)."""
