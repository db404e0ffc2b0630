"""Runs in a fresh interpreter (``python -I``) to benchmark a bundle with teachers and ``nexa`` unreachable.

It must not import ``nexa``: an import hook makes ``nexa`` and ``transformers`` unimportable before
anything else runs, teacher paths must not exist, and the only model code used is ``nexus``.
Arguments: BUNDLE ITEMS_JSON RESULT_JSON [FORBIDDEN_PATH ...].
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
    prompts = [item["prompt"] for item in items]
    outputs = model.generate_batch(prompts, capability=None, max_new_tokens=items[0].get("max_new_tokens", 8) if items else 8)
    routed = [model.route(p) for p in prompts]
    by_capability = {}
    for item, output, route in zip(items, outputs, routed):
        entry = by_capability.setdefault(item["capability"], {"correct": 0, "n": 0, "routed_right": 0})
        entry["n"] += 1
        entry["correct"] += int(output.strip() == item["answer"].strip())
        entry["routed_right"] += int(route == item["capability"])
    result = {
        "student_scores": {c: e["correct"] / e["n"] for c, e in sorted(by_capability.items())},
        "router_accuracy": {c: e["routed_right"] / e["n"] for c, e in sorted(by_capability.items())},
        "nexa_imported": any(m == "nexa" or m.startswith("nexa.") for m in sys.modules),
        "transformers_imported": any(m.split(".")[0] == "transformers" for m in sys.modules),
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE"),
        "network_blocked": socket.create_connection is _no_network,
    }
    with open(result_file, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
