from pathlib import Path

from dropbench.export_latency import measure_export
from dropbench.jobs import log_to

with log_to(snakemake.log[0]):
    w = snakemake.wildcards
    measure_export(Path(snakemake.input.onnx).parent, snakemake.input.full_model, snakemake.params.protocol,
                   snakemake.output[0], {"model": w.model, "variant": f"{w.strategy}-k{w.k}", "task": w.task})
