"""The Terraform in infra/terraform: formatted, parsed, checked by checkov, and agreeing with the code."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest

from atlas.audit import sql

ROOT = Path(__file__).resolve().parents[3]
TERRAFORM = ROOT / "infra" / "terraform"
# `make setup` installs checkov (pinned in the Makefile) in a virtualenv of its own: its dependencies are not ATLAS's.
CHECKOVS = sorted(p.parent / "bin" / "checkov" for p in (ROOT / ".atlas" / "tools").glob("checkov-*/.installed"))


def _plain(value):
    """python-hcl2's output without its quoting of strings and keys, and without its block markers."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def parsed() -> dict[str, dict]:
    found = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as source:
            found[path.name] = _plain(hcl2.load(source))
    return found


def resources(kind: str) -> dict[str, dict]:
    return {name: body for doc in parsed().values() for block in doc.get("resource", ())
            for type_, named in block.items() if type_ == kind for name, body in named.items()}


def test_every_file_parses_and_declares_the_resources_atlas_needs():
    kinds = {type_ for doc in parsed().values() for block in doc.get("resource", ()) for type_ in block}
    assert {"aws_s3_bucket", "aws_s3_bucket_versioning", "aws_s3_bucket_object_lock_configuration",
            "aws_s3_bucket_server_side_encryption_configuration", "aws_s3_bucket_public_access_block",
            "aws_s3_bucket_lifecycle_configuration", "aws_s3_bucket_policy", "aws_dynamodb_table", "aws_iam_role",
            "aws_iam_role_policy", "aws_glue_catalog_table", "aws_kms_key"} <= kinds
    [lock] = resources("aws_s3_bucket_object_lock_configuration").values()
    assert lock["rule"][0]["default_retention"][0]["mode"] == "COMPLIANCE"
    assert set(resources("aws_dynamodb_table")) == {"orders", "executions", "balances", "idempotency"}


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed here (hcl2 still parses)")
def test_the_files_are_formatted():
    checked = subprocess.run(["terraform", "fmt", "-check", "-diff", str(TERRAFORM)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_checkov_passes_every_check_and_each_skip_says_why(tmp_path):
    assert CHECKOVS, "checkov is missing: `make setup` installs it under .atlas/tools"
    done = subprocess.run([str(CHECKOVS[-1]), "-d", str(TERRAFORM), "--framework", "terraform", "--output", "json",
                           "--compact", "--skip-download"], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    report = json.loads(done.stdout)
    results = report["results"] if isinstance(report, dict) else report[0]["results"]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in results["failed_checks"]]
    assert failed == []
    assert len(results["passed_checks"]) > 50, "checkov checked next to nothing"
    for skipped in results["skipped_checks"]:
        assert len(skipped["check_result"].get("suppress_comment", "").strip()) > 20, skipped["check_id"]
    written = re.findall(r"checkov:skip=(\w+):(.*)", "".join(p.read_text() for p in TERRAFORM.glob("*.tf")))
    assert written and all(len(reason.strip()) > 20 for _, reason in written)


def _trail_sql_properties() -> dict[str, str]:
    text = (sql.ATHENA / "trail.sql").read_text()
    return dict(re.findall(r"'([a-z.]+)' = '([^']*)'", text.split("TBLPROPERTIES", 1)[1].split(");", 1)[0]))


def test_the_glue_table_is_the_table_of_trail_sql():
    [table] = resources("aws_glue_catalog_table").values()
    parameters = table["parameters"]
    expected = _trail_sql_properties()
    assert set(expected) <= set(parameters)
    # The same literal values; where one side fills in a setting, both name the same thing.
    for name, value in expected.items():
        if "{{" not in value and "${" not in parameters[name]:
            assert parameters[name] == value, name
    assert parameters["storage.location.template"].endswith(
        "topic=$${topic}/dt=$${dt}/hour=$${hour}/partition=$${partition}/")
    ddl = (sql.ATHENA / "trail.sql").read_text()
    columns = re.findall(r"^\s+`(\w+)` ([a-z<>]+),?$", ddl.split("PARTITIONED BY")[0], re.M)
    storage = table["storage_descriptor"][0]
    assert [(c["name"], c["type"]) for c in storage["columns"]] == columns
    partitions = re.findall(r"`(\w+)` (\w+)", ddl.split("PARTITIONED BY", 1)[1].split("\n", 1)[0])
    assert [(p["name"], p["type"]) for p in table["partition_keys"]] == partitions
    assert storage["ser_de_info"][0]["serialization_library"] in ddl


def test_the_glue_table_names_every_atlas_topic():
    topics = next(doc["locals"][0]["topics"] for doc in parsed().values()
                  if doc.get("locals") and "topics" in doc["locals"][0])
    assert topics == list(sql.TOPICS)


def test_the_tables_are_those_cloud_provision_makes():
    from atlas.cloud.resources import TABLES

    declared = resources("aws_dynamodb_table")
    for spec in TABLES:
        table = declared[spec.suffix]
        assert table["name"] == "${var.name_prefix}-" + spec.suffix
        assert (table["hash_key"], table.get("range_key")) == (spec.hash_key, spec.range_key)
        assert [(a["name"], a["type"]) for a in table["attribute"]] == [(a, spec.type_of(a)) for a in spec.attributes()]
        assert [(i["name"], i["hash_key"], i["range_key"]) for i in table.get("global_secondary_index", [])] == \
            list(spec.indexes)
        assert [(i["name"], i["range_key"]) for i in table.get("local_secondary_index", [])] == list(spec.local_indexes)
        assert (table["ttl"][0]["attribute_name"] if "ttl" in table else None) == spec.ttl
