from dropbench.device import set_threads
from dropbench.gpu_slots import gpu_slot
from dropbench.jobs import log_to
from dropbench.latency import measure_architecture

with log_to(snakemake.log[0]), gpu_slot():
    set_threads(1)  # the job holds every core so that nothing runs beside it, but times one thread
    architecture = {**dict(snakemake.wildcards.items()), "k": int(snakemake.wildcards.k)}
    measure_architecture(snakemake.input.model, snakemake.params.protocol, snakemake.output[0], architecture,
                         full_model_dir=snakemake.input.get("full_model"))
