"""NSGA-II architecture search through the latency oracle (pymoo-based).

>>> from client_sdk.search import search
>>> result = search(client, "nasbench201", ["pixel3"], objective="cifar10", evaluations=3000)
>>> result.front.to_json("front.json"); print(result.front.table())

Closed loop (measure on the device during the search, see docs/closed_loop.md):

>>> result = search(client, "nasbench201", ["my-phone"], measure=time_on_phone,
...                 measure_budget=20, rounds=2, latency_resolution_ms="auto")
"""

from client_sdk._extras import require

require("search", "client_sdk.search (NSGA-II search)", "pymoo", "matplotlib", "tqdm")

from client_sdk.search.loop import infer_device_resolution, local_measure
from client_sdk.search.nsga2 import load_checkpoint, search
from client_sdk.search.objectives import params_proxy, resolve_objective, table_accuracy
from client_sdk.search.operators import make_operators
from client_sdk.search.problem import EvaluationCache, OracleProblem
from client_sdk.search.references import front_references
from client_sdk.search.results import ParetoFront, SearchResult, pareto_mask, true_front_rows

__all__ = [
    "EvaluationCache",
    "OracleProblem",
    "ParetoFront",
    "SearchResult",
    "front_references",
    "infer_device_resolution",
    "load_checkpoint",
    "local_measure",
    "make_operators",
    "params_proxy",
    "pareto_mask",
    "resolve_objective",
    "search",
    "table_accuracy",
    "true_front_rows",
]
