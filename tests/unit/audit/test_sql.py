"""SQL over the audit trail: the views Athena runs, run by DuckDB over a trail in a folder."""
from __future__ import annotations

import json
from datetime import date
from decimal import Decimal as D

import pytest

from atlas.audit import sql
from atlas.audit.format import AuditRecord, Batch
from atlas.audit.sinks import FileSink
from atlas.audit.trail import write_batch
from tests.helpers import AUDIT_T0 as T0
from tests.helpers import execution_report

PREFIX = "audit"


def report(order_id: str, seq: int, exec_type: str, status: str, **fields: str) -> bytes:
    made = execution_report(exec_type, status, order_id=order_id, **fields)
    return made.model_copy(update={"exec_id": f"{order_id}-{seq}", "seq": seq}).model_dump_json().encode()


def write(root, topic: str, partition: int, values: list[bytes], first: int = 0, encoded: bool = True, previous=None):
    records = [AuditRecord.of(topic, partition, first + i, T0 + i, b"alice", value, [("traceparent", b"00-x")])
               for i, value in enumerate(values)]
    return write_batch(FileSink(root), PREFIX, Batch(topic, partition, first, 0, records), previous)


@pytest.fixture
def trail(tmp_path):
    """Two orders' reports, one sent again after a restart; commands, one sent twice; records no view can read."""
    executions = [
        report("O1", 1, "PENDING_NEW", "PENDING_NEW"),
        report("O1", 2, "NEW", "NEW"),
        report("O1", 3, "TRADE", "PARTIALLY_FILLED", last_qty="0.0001", last_px="65000.123", cum_qty="0.0001"),
        report("O2", 1, "REJECTED", "REJECTED", reason="MAX_NOTIONAL: over 1000000"),
    ]
    first = write(tmp_path, "atlas.executions", 3, executions)
    again = [executions[2],  # the same report, sent again by an OMS that restarted before its commit
             report("O1", 4, "TRADE", "FILLED", last_qty="1.9999", last_px="64999.99", cum_qty="2")]
    write(tmp_path, "atlas.executions", 3, again, first=4, previous=first)
    submit = json.dumps({"command_id": "submit-1", "command": "SubmitOrder", "account_id": "alice",
                         "quantity": "2", "price": "100.50", "symbol": "BTC-USD"}).encode()
    write(tmp_path, "atlas.commands", 0, [submit, submit, b"not json", b'{"command_id": "x", "quantity": "many"}',
                                          b"\xff\xfe binary", b"[1, 2]"])
    write(tmp_path, "other.executions", 0, [report("O9", 1, "NEW", "NEW")])  # another prefix's topic
    return f"file://{tmp_path}"


def rows(sink: str, query: str) -> list[dict]:
    columns, found = sql.query(sink, PREFIX, "atlas", query)
    return [dict(zip(columns, row)) for row in found]


def test_each_execution_report_counts_once_however_often_it_was_sent(trail):
    assert rows(trail, "SELECT count(*) AS n FROM atlas_execution_reports_all") == [{"n": 6}]
    found = rows(trail, "SELECT exec_id, seq, exec_type, copy_no, kafka_offset FROM atlas_execution_reports "
                        "ORDER BY exec_id")
    assert [(r["exec_id"], r["kafka_offset"]) for r in found] == [
        ("O1-1", 0), ("O1-2", 1), ("O1-3", 2), ("O1-4", 5), ("O2-1", 3)]  # the first copy of O1-3 kept
    assert {r["copy_no"] for r in found} == {1}


def test_amounts_stay_exact_and_fills_carry_their_notional(trail):
    fills = rows(trail, "SELECT exec_id, quantity, price, notional, status FROM atlas_fills ORDER BY exec_id")
    assert fills == [
        {"exec_id": "O1-3", "quantity": D("0.0001"), "price": D("65000.123"), "notional": D("6.5000123"),
         "status": "PARTIALLY_FILLED"},
        {"exec_id": "O1-4", "quantity": D("1.9999"), "price": D("64999.99"), "notional": D("129993.480001"),
         "status": "FILLED"}]
    [total] = rows(trail, "SELECT sum(notional) AS total, max(ts) AS last FROM atlas_fills")
    assert total["total"] == D("129999.9800133") and total["last"].timestamp() == 0.001  # the reports say ts=1 (ms)


def test_rejects_by_reason_and_an_orders_story(trail):
    assert rows(trail, "SELECT split_part(reason, ':', 1) AS code, count(*) AS n FROM atlas_execution_reports "
                       "WHERE exec_type = 'REJECTED' GROUP BY 1") == [{"code": "MAX_NOTIONAL", "n": 1}]
    story = rows(trail, "SELECT seq, exec_type, cum_qty, leaves_qty FROM atlas_execution_reports "
                        "WHERE order_id = 'O1' ORDER BY seq")
    assert [(r["seq"], r["exec_type"], r["cum_qty"]) for r in story] == [
        (1, "PENDING_NEW", 0), (2, "NEW", 0), (3, "TRADE", D("0.0001")), (4, "TRADE", 2)]


def test_commands_count_once_and_what_is_not_json_or_not_a_number_reads_as_null(trail):
    assert rows(trail, "SELECT count(*) AS n FROM atlas_commands_all") == [{"n": 5}]  # the binary record left out
    found = rows(trail, "SELECT command_id, command, quantity, price FROM atlas_commands ORDER BY command_id NULLS LAST")
    assert found == [
        {"command_id": "submit-1", "command": "SubmitOrder", "quantity": D("2"), "price": D("100.5")},
        {"command_id": "x", "command": None, "quantity": None, "price": None},
        *[{"command_id": None, "command": None, "quantity": None, "price": None}] * 2]  # each one without an id kept


def test_another_topic_prefix_reads_its_own_topics(trail):
    columns, found = sql.query(trail, PREFIX, "other", "SELECT order_id FROM atlas_execution_reports")
    assert found == [("O9",)]


def test_an_empty_trail_answers_with_no_rows_and_a_missing_one_or_a_bad_query_is_an_error(tmp_path, trail):
    (tmp_path / "empty" / PREFIX).mkdir(parents=True)
    assert rows(f"file://{tmp_path / 'empty'}", "SELECT count(*) AS n FROM atlas_fills") == [{"n": 0}]
    with pytest.raises(sql.TrailQueryError, match="no audit trail"):
        sql.query(f"file://{tmp_path / 'nowhere'}", PREFIX, "atlas", "SELECT 1")
    with pytest.raises(sql.TrailQueryError, match="nope"):
        sql.query(trail, PREFIX, "atlas", "SELECT nope FROM atlas_fills")


def test_rows_print_as_a_table_csv_or_json_lines_with_exact_decimals():
    columns, found = ["code", "notional"], [("A", D("1.500000000000000000")), ("B", None)]
    assert sql.render(columns, found) == "code  notional\n----  --------\nA     1.5\nB\n(2 rows)\n"
    assert sql.render(columns, found, "csv") == "code,notional\nA,1.5\nB,\n"
    assert [json.loads(line) for line in sql.render(columns, found, "json").splitlines()] == [
        {"code": "A", "notional": "1.5"}, {"code": "B", "notional": None}]


def test_the_athena_ddl_is_filled_in_for_an_s3_sink_only():
    ddl = sql.athena_ddl("s3://bucket/trail", PREFIX, "atlas", ["atlas.commands", "atlas.executions"], 8,
                         date(2026, 3, 1))
    assert "LOCATION 's3://bucket/trail/audit/'" in ddl
    assert "'projection.topic.values' = 'atlas.commands,atlas.executions'" in ddl
    assert "'projection.partition.range' = '0,7'" in ddl and "'projection.dt.range' = '2026-03-01,NOW'" in ddl
    assert "'s3://bucket/trail/audit/topic=${topic}/dt=${dt}/hour=${hour}/partition=${partition}/'" in ddl
    assert "WHERE topic = 'atlas.executions'" in ddl and "{{" not in ddl.split("CREATE", 1)[1]
    assert ddl.count("CREATE ") == 7  # the table, the trail's view and the five views
    with pytest.raises(ValueError, match="Athena reads S3"):
        sql.athena_ddl("file:///tmp/x", PREFIX, "atlas", [], 8, date(2026, 3, 1))


def test_the_athena_table_names_every_atlas_topic():
    from atlas.settings import settings
    from atlas.topics import ALL

    assert sorted(settings.topic(t) for t in sql.TOPICS) == sorted(t.get_topic_name() for t in ALL)
