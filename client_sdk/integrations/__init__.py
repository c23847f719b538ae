"""Adapters to the tools NAS users already drive searches with (``optuna``: extra ``[optuna]``)."""
