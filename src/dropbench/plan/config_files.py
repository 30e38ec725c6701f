"""A config as the workflow reads it, before its values are checked (dropbench.plan.config_check): YAML files
(keys given twice, which YAML itself silently resolves to the last; files merged in order), command-line strings
turned into the schema's types, unknown keys with the closest valid one, and the JSON schema, which also fills the
defaults. Every error is a ConfigError naming the key, the bad value and what is allowed."""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path

# The workflow's schema (a checkout or an editable install: ``scripts/setup.sh``).
SCHEMA = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    pass


def unknown_keys(config: dict, schema: dict) -> list[str]:
    """Keys of ``config`` the schema does not allow, each as "path: did you mean ...?" (checked before
    schema validation so that a misspelling gets a hint instead of jsonschema's generic message)."""
    found = []

    def walk(values, node: dict, where: str) -> None:
        if not isinstance(values, dict) or node.get("type") not in ("object", None):
            return
        known = node.get("properties", {})
        extra = node.get("additionalProperties", True)
        for key, value in values.items():
            name = f"{where}.{key}" if where else str(key)
            if key in known:
                walk(value, known[key], name)
            elif isinstance(extra, dict):
                walk(value, extra, name)
            elif extra is False:
                close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                found.append(f"{name!r} ({hint}allowed here: {', '.join(known)})")

    walk(config, schema, "")
    return found


def load_schema(schema_path: str | Path = SCHEMA) -> dict:
    import yaml

    try:
        return yaml.safe_load(Path(schema_path).read_text())
    except OSError as err:
        raise ConfigError(f"config schema {schema_path}: cannot read it ({err.strerror or err})") from None


def load_config_file(path: str | Path) -> dict:
    """The mapping in a YAML config file; a one-line ConfigError naming the file when it cannot be read,
    is not YAML, is empty or holds something other than a mapping of keys."""
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"config file {path}: cannot read it ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config file {path}: not valid YAML ({problem}{where})") from None
    if config is None:
        raise ConfigError(f"config file {path}: empty; expected a mapping of config keys (models, tasks, ...; see config/README.md)")
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path}: expected a mapping of config keys (models, tasks, ...), "
                          f"found a {type(config).__name__}")
    return config


def merge_config_files(paths) -> dict:
    """Several config files, each merged into the ones before it as Snakemake merges ``--configfile a b``:
    mappings key by key, any other value (lists included) replaced whole."""
    merged: dict = {}
    for path in paths:
        _merge(merged, load_config_file(path))
    return merged


def _merge(config: dict, overlay: dict) -> dict:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            _merge(config[key], value)
        else:
            config[key] = copy.deepcopy(value)
    return config


# Snakemake reads ``--config key=value``: a top-level value as an int, float, True/False or YAML, but every
# value inside a list or mapping (``training={epochs: 1}``, ``seeds=[1,2]``) as a string; and it refuses a
# top-level key of one character (``k``), before the workflow runs, with "Config entry must start with a
# valid identifier". Such keys are set with a small --configfile overlay instead (config/README.md).
_NULLS = {"", "~", "null", "Null", "NULL"}


_BOOLEANS = {"true": True, "false": False}


_INTEGER = re.compile(r"[-+]?[0-9]+")


_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def values_from_command_line(config: dict, schema: dict) -> None:
    """Turn the strings ``--config`` leaves inside lists and mappings into the types the schema declares
    there (integer, number, boolean, null), in place. A string where the schema allows strings, and one
    that does not read as the declared type, is left as it is: the schema check then names its key."""

    def convert(value, node: dict):
        if isinstance(value, dict) and isinstance(node, dict):
            known, extra = node.get("properties", {}), node.get("additionalProperties")
            for key in value:
                sub = known.get(key, extra if isinstance(extra, dict) else None)
                if sub is not None:
                    value[key] = convert(value[key], sub)
            return value
        if isinstance(value, list) and isinstance(node.get("items"), dict):
            return [convert(item, node["items"]) for item in value]
        return _typed(value, _declared_types(node)) if isinstance(value, str) else value

    convert(config, schema)


def _declared_types(node: dict) -> set[str]:
    """The JSON types a schema node allows (an enum's members by their own type; oneOf/anyOf: the union)."""
    types = node.get("type", [])
    found = {types} if isinstance(types, str) else set(types)
    names = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}
    found |= {names.get(type(member), "other") for member in node.get("enum", [])}
    for alternative in (*node.get("oneOf", []), *node.get("anyOf", [])):
        found |= _declared_types(alternative)
    return found if found else {"string"}  # no type given: anything goes, so a string stays one


def _typed(text: str, types: set[str]):
    if "string" in types:
        return text
    stripped = text.strip()
    if "null" in types and stripped in _NULLS:
        return None
    if "boolean" in types and stripped.lower() in _BOOLEANS:
        return _BOOLEANS[stripped.lower()]
    if types & {"integer", "number"} and _INTEGER.fullmatch(stripped):
        return int(stripped)
    if "number" in types and _NUMBER.fullmatch(stripped):
        return float(stripped)
    return text


def check_known_keys(config: dict, schema_path) -> None:
    import yaml

    unknown = unknown_keys(config, yaml.safe_load(Path(schema_path).read_text()))
    if unknown:
        raise ConfigError(f"unknown config key(s): {'; '.join(unknown)}; see config/README.md")


def validate_schema(config: dict, schema: dict) -> None:
    """Validate against the JSON schema and fill in its defaults, as ``snakemake.utils.validate`` does
    (jsonschema's documented extension of ``properties``), without needing Snakemake."""
    from jsonschema import Draft202012Validator, exceptions, validators

    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, node):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from check_properties(validator, properties, instance, node)

    validator = validators.extend(Draft202012Validator, {"properties": properties_with_defaults})(schema)
    error = exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path).lstrip(".")
        raise ConfigError(f"config key {where!r}: {error.message}" if where else f"config: {error.message}")


def duplicate_keys(path: str | Path) -> list[str]:
    """Keys given more than once in one mapping of a YAML (or JSON) file, with their lines."""
    import yaml

    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return []  # unreadable files are reported by whoever loads them
    found = []

    def walk(node, where: str) -> None:
        if isinstance(node, yaml.MappingNode):
            first_line = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
                name = f"{where}.{key}" if where else key
                line = key_node.start_mark.line + 1
                if key in first_line:
                    found.append(f"{name!r} (lines {first_line[key]} and {line})")
                else:
                    first_line[key] = line
                walk(value_node, name)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{where}[{i}]")

    walk(root, "")
    return found


def check_config_files(paths) -> None:
    for path in paths:
        duplicates = duplicate_keys(path)
        if duplicates:
            raise ConfigError(
                f"config file {path}: key(s) given more than once: {', '.join(duplicates)}; "
                "YAML would silently keep only the last; allowed: each model, task and key once"
            )
