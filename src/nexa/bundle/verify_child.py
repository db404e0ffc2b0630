"""Runs in a fresh interpreter (``python -I``) to benchmark a bundle with teachers and ``nexa`` unreachable.

It must not import ``nexa``: an import hook makes ``nexa`` and ``transformers`` unimportable before
anything else runs, teacher paths must not exist, and the only model code used is ``nexus``.
Arguments: BUNDLE ITEMS_JSON RESULT_JSON [FORBIDDEN_PATH ...]. ITEMS_JSON is the benchmark's items (a list:
each is generated, the outputs come back) or lm-eval's requests for the bundle
(``{"loglikelihood": [[context, continuation], ...]}`` or ``{"generate_until": [[context, [stop, ...], max_tokens], ...]}``),
answered with the runtime's own log-likelihoods and generations, so registry metrics that are lm-eval tasks
are scored teacher-free too.
"""

import importlib.abc
import json
import os
import socket
import sys

BLOCKED = ("nexa", "transformers")


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ImportError(f"{fullname} is not importable in the teacher-free verification process")
        return None


def _no_network(*args, **kwargs):
    raise OSError("network access is disabled in the teacher-free verification process")


def block_network() -> None:
    """Any attempt to open a connection fails, so a bundle that needs the network cannot pass."""
    socket.socket.connect = _no_network
    socket.socket.connect_ex = _no_network
    socket.create_connection = _no_network
    socket.getaddrinfo = _no_network


def main(argv):
    sys.meta_path.insert(0, _Blocker())
    block_network()
    bundle, items_file, result_file, *forbidden = argv
    present = [p for p in forbidden if os.path.exists(p)]
    if present:
        raise SystemExit(f"teacher files still exist, verification refused: {present}")
    # the nexus shipped beside this file (python -I ignores PYTHONPATH; nexa stays blocked either way)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from nexus import NexusModel

    model = NexusModel.load(bundle, device="cpu")
    items = json.loads(open(items_file, encoding="utf-8").read())
    result = answer_requests(model, items) if isinstance(items, dict) else benchmark(model, items)
    result.update({
        "nexa_imported": any(m == "nexa" or m.startswith("nexa.") for m in sys.modules),
        "transformers_imported": any(m.split(".")[0] == "transformers" for m in sys.modules),
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE"),
        "network_blocked": socket.create_connection is _no_network,
    })
    with open(result_file, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)


def answer_requests(model, requests: dict) -> dict:
    """lm-eval's requests of one kind, answered greedily by the bundle (the router picks each adapter)."""
    if "loglikelihood" in requests:
        return {"loglikelihood": [list(r) for r in model.loglikelihood([tuple(p) for p in requests["loglikelihood"]])]}
    return {"generate_until": [model.generate_batch([context], max_new_tokens=int(most), stop=list(stop) or None)[0]
                               for context, stop, most in requests["generate_until"]]}


def benchmark(model, items: list) -> dict:
    """Every item's output (the gate scores them with the registry's metric), exact match and routing per capability."""
    prompts = [item["prompt"] for item in items]
    outputs = model.generate_batch(prompts, capability=None, max_new_tokens=items[0].get("max_new_tokens", 8) if items else 8)
    routed = [model.route(p) for p in prompts]
    by_capability = {}
    for item, output, route in zip(items, outputs, routed):
        entry = by_capability.setdefault(item["capability"], {"correct": 0, "n": 0, "routed_right": 0})
        entry["n"] += 1
        entry["correct"] += int(output.strip() == item["answer"].strip())
        entry["routed_right"] += int(route == item["capability"])
    return {
        "student_scores": {c: e["correct"] / e["n"] for c, e in sorted(by_capability.items())},
        "router_accuracy": {c: e["routed_right"] / e["n"] for c, e in sorted(by_capability.items())},
        "outputs": outputs,
    }


if __name__ == "__main__":
    main(sys.argv[1:])
