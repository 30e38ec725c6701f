# A Hugging Face model card for every fine-tuned cell (dropbench.report.model_card): a folder `publish/` beside the
# cell's outputs holding the fine-tuned files and the tokenizer (hard links, else copies) and README.md, the
# card. Its own output, so no fine-tune or evaluate job changes; cheap, part of the default target.
# Params and the list of folders: common.smk (card_params, card_folders).


rule model_card:
    input:
        # only the cell's result and the statistics: the fine-tuned files, train log and tokenizer (params) are
        # intermediates a user may delete under a valid result, and a card must never re-train a cell
        metrics=rules.evaluate.output[0],
        stats=rules.stats.output.stats,
    output:
        directory(f"{grid.CELL_DIR}/publish"),
    params:
        job=card_params,
        finetuned=f"{grid.CELL_DIR}/finetuned",
        train_log=f"{grid.CELL_DIR}/train_log.json",
        tokenizer=cell_model_dir,
        code=code_digest("report.model_card"),
    log:
        f"logs/model_card/{grid.CELL_NAME}.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    resources:
        **LIGHT_RESOURCES,
    script:
        "../scripts/reports_step.py"
