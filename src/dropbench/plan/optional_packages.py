"""The packages a config's opt-in keys need (``tracking``: mlflow; ``export``: onnx, onnxruntime), checked
before any job when the jobs run in this Python (without --use-conda)."""

from __future__ import annotations

from dropbench.plan.config_files import ConfigError


def optional_packages(config: dict) -> dict[str, tuple[list[str], str, str]]:
    """Per opt-in config key in use: the modules its jobs import, its pip extra and its conda env file."""
    needed = {}
    mlflow_cfg = (config.get("tracking") or {}).get("mlflow")
    if mlflow_cfg:
        database = mlflow_cfg["tracking_uri"].lower().startswith(("sqlite:", "postgresql", "mysql", "mssql"))
        needed["tracking"] = (["mlflow", *(["sqlalchemy", "alembic"] if database else [])], "tracking", "envs/tracking.yaml")
    if config.get("export"):
        needed["export"] = (["onnx", "onnxruntime"], "export", "envs/export.yaml")
    return needed


def check_optional_packages(config: dict, uses_conda: bool) -> None:
    """With ``tracking`` or ``export``, fail before any job if the packages their jobs import are missing
    (without --use-conda the jobs run in this Python): mlflow and, for a database store (sqlite, ...), MLflow's
    database packages; onnx and onnxruntime. Finds them without importing them. (A server database's own
    driver, e.g. psycopg2, is not looked for.)"""
    import importlib.util

    if uses_conda:
        return
    for key, (modules, extra, env) in optional_packages(config).items():
        missing = [name for name in modules if importlib.util.find_spec(name) is None]
        if missing:
            raise ConfigError(f"config key '{key}': this Python lacks {', '.join(missing)}; install them with "
                              f"`pip install -e .[{extra}]` (or the pins in requirements.txt), run with --use-conda "
                              f"({env}), or remove '{key}'")
