"""The default's 8-view call under ONNX Runtime's threading settings (issue #24's cold start): does running the two
members side by side (inter-op parallelism) beat one member after the other on all cores (intra-op)?

    python benchmarks/ort_sessions.py --json benchmarks/ort_sessions.json

For each setting: the session's load time, its first call and the median of 7 more calls on the 8 dihedral views of
examples/ISIC_0026531.jpg, as `dermcli predict` builds them. `dermcli predict` uses the first setting.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from dermcli.data.images import decode_rgb
from dermcli.data.transforms import normalize
from dermcli.inference.predict import SHIPPED
from dermcli.inference.tta import tta_views

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import REPO  # noqa: E402

CORES = os.cpu_count() or 1
SETTINGS = {  # name: (execution mode, intra-op threads, inter-op threads)
    f"sequential, {CORES} intra-op threads (predict's)": (ort.ExecutionMode.ORT_SEQUENTIAL, CORES, 1),
    f"parallel, 1 intra-op x {CORES} inter-op threads": (ort.ExecutionMode.ORT_PARALLEL, 1, CORES),
    f"parallel, {CORES} intra-op x {CORES} inter-op threads": (ort.ExecutionMode.ORT_PARALLEL, CORES, CORES),
    "sequential, 1 thread": (ort.ExecutionMode.ORT_SEQUENTIAL, 1, 1),
}


def measure(graph: Path, mode, intra: int, inter: int, calls: int) -> dict:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.execution_mode, options.intra_op_num_threads, options.inter_op_num_threads = mode, intra, inter
    start = time.perf_counter()
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    load = time.perf_counter() - start
    meta = json.loads(session.get_modelmeta().custom_metadata_map["dermcli"])
    image, _ = decode_rgb(REPO / "examples" / "ISIC_0026531.jpg", meta["input_size"], meta["training_resolution"]["short_side"])
    views = normalize(np.concatenate([np.ascontiguousarray(v) for v in tta_views(image[None], meta["tta"])]), meta["preprocessing"])
    times = []
    for _ in range(calls + 1):
        start = time.perf_counter()
        session.run(None, {"images": views})
        times.append(time.perf_counter() - start)
    return {"load_s": load, "first_call_s": times[0], "median_call_s": statistics.median(times[1:]), "views": len(views)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graph", type=Path, default=SHIPPED["lite0"].with_suffix(".onnx"))
    parser.add_argument("--calls", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = {"cpu_count": CORES, "load_average_at_start": os.getloadavg()[0], "graph": args.graph.name,
              "settings": {name: measure(args.graph, *setting, args.calls) for name, setting in SETTINGS.items()},
              "load_average_at_end": os.getloadavg()[0]}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
