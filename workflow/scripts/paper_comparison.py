from dropbench.jobs import log_to
from dropbench.paper_comparison import PAPER_DIR, paper_comparison

with log_to(snakemake.log[0]):
    paper_comparison(
        summary_csv=snakemake.input.summary,
        paper_csv=PAPER_DIR / "published_scores.csv",  # shipped with the code; its digest is in the params
        md_path=snakemake.output.md,
        html_path=snakemake.output.html,
        csv_path=snakemake.output.csv,
        sources=snakemake.params.sources,
    )
