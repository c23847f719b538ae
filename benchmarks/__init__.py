"""The product's benchmarks: serving, quality, search, onboarding, load, fuzz, chaos, fair share,
parse, and the ones behind the documented targets. Run each from the checkout root as
``.venv/bin/python -m benchmarks.<name> [--json PATH] ...``; results go to
``benchmarks/results/`` (one current JSON per benchmark). Shared command line and output:
:mod:`benchmarks._cli`; shared data helpers: :mod:`benchmarks.common`."""
