# Exports for deployment (config `export`; dropbench.export.exports, dropbench.export.export_latency, dropbench.export.exports_report):
# each chosen cell's Hugging Face folder, ONNX fp32 and ONNX int8 models with their dev scores, their latency in
# each runtime beside the unpruned torch model, and reports/exports.{md,csv}. Included only with `export`, so a
# config without it plans none of these jobs and imports neither onnx nor onnxruntime.
# Input functions and targets: common.smk (export_cell_inputs, export_params, export_targets).


rule export_cell:
    input:
        unpack(export_cell_inputs),
    output:
        hf=directory(f"{grid.EXPORT_DIR}/hf"),
        onnx=f"{grid.EXPORT_DIR}/model.onnx",
        int8=f"{grid.EXPORT_DIR}/model.int8.onnx",
        record=f"{grid.EXPORT_DIR}/export.json",
    params:
        job=export_params,
    log:
        f"logs/export_cell/{{model}}/{grid.VARIANT}/{{task}}.log",
    conda:
        "../../envs/export.yaml"
    resources:
        mem_mb=config["resources"]["evaluate"]["mem_mb"],
        runtime=config["resources"]["evaluate"]["runtime"],
    script:
        "../scripts/exports_step.py"


# Timed like measure_latency (latency.smk): the job holds every core and times one thread.
rule measure_export_latency:
    input:
        hf=rules.export_cell.output.hf,
        onnx=rules.export_cell.output.onnx,
        int8=rules.export_cell.output.int8,
        full_model=lambda wildcards: grid.pretrained_dir(wildcards.model),
    output:
        f"{grid.EXPORT_DIR}/latency.json",
    params:
        protocol=latency_params,
    log:
        f"logs/measure_export_latency/{{model}}/{grid.VARIANT}/{{task}}.log",
    conda:
        "../../envs/export.yaml"
    threads: every_core()
    resources:
        mem_mb=config["resources"]["evaluate"]["mem_mb"],
        runtime=config["resources"]["evaluate"]["runtime"],
    script:
        "../scripts/exports_step.py"


rule exports_report:
    input:
        records=[f"{grid.export_dir(cell)}/export.json" for cell in EXPORT_CELLS],
        latencies=[f"{grid.export_dir(cell)}/latency.json" for cell in EXPORT_CELLS],
    output:
        csv="reports/exports.csv",
        md="reports/exports.md",
    params:
        code=code_digest("export.exports_report"),
    log:
        "logs/exports_report.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/reports_step.py"
