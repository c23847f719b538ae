"""Finished studies whose conclusions are in the docs (head variants, feature selection,
harness settings, two-pass timing, the block look-up table, references, adaptive suggestion,
onboarding replay): kept runnable as ``python -m benchmarks.studies.<name>`` to reproduce the
cited figures; they are not product benchmarks."""
