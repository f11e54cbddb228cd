"""TR-4904's click-through-rate prediction: Criteo click logs read in blocks, a pandas +
scikit-learn random forest (the seed's baseline) against forests and gradient boosting trained
on a real Dask cluster, scored by accuracy, AUC and log-loss beside the majority class."""
