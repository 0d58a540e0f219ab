"""Tests that kill the mutants of projections/transactions.py the rest of the suite let
survive (``make mutation``; the list and the equivalent mutants are in docs/testing.md)."""

from __future__ import annotations

import pytest

from chargeledger.projections.transactions import (
    Anomaly,
    energy_register_wh,
    is_sentinel_id,
)
from tests.test_projections import Log, _kinds, _transaction

__all__: list[str] = []


def test_sentinel_ids_are_those_outside_1_to_2_pow_31_minus_1() -> None:
    assert not is_sentinel_id(1)
    assert not is_sentinel_id(2**30)  # well inside the range we issue from
    assert not is_sentinel_id(2**31 - 1)  # the largest id we may issue
    assert is_sentinel_id(2**31)
    assert is_sentinel_id(0) and is_sentinel_id(-1) and is_sentinel_id(2**63 - 1)


def test_anomalies_are_immutable_and_built_by_keyword() -> None:
    anomaly = Anomaly(kind="seq_no_gap", position=1, detail="d", station="CP1", transaction_id=7)
    with pytest.raises(AttributeError):
        anomaly.detail = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Anomaly("seq_no_gap", 1, "d", "CP1", 7)  # type: ignore[misc]


def test_an_unreadable_sample_does_not_hide_the_readings_after_it() -> None:
    samples = [{"value": "not a number"}, {"value": "1500"}]
    assert energy_register_wh([{"timestamp": "t", "sampledValue": samples}]) == 1500.0


def test_a_stop_reading_equal_to_the_start_is_no_anomaly() -> None:
    log = Log()
    log.open("CP1")
    log.start("CP1", 7)  # meterStart 1000
    log.stop("CP1", 7, 1000)
    transaction = _transaction(log, 7)
    assert transaction.energy_wh == 0.0
    assert _kinds(transaction.anomalies) == []


def test_a_stop_reading_without_a_start_reading_gives_no_energy() -> None:
    log = Log()
    log.open("CP1")
    log.start("CP1", 7, meterStart=None)  # an imported log: no start reading
    log.stop("CP1", 7, 2500)
    transaction = _transaction(log, 7)
    assert transaction.status == "ended" and transaction.meter_stop == 2500
    assert transaction.energy_wh is None


def test_offline_is_set_only_by_an_event_flagged_offline() -> None:
    log = Log()
    log.open("CP1", "ocpp2.0.1")
    log.event("CP1", "T1", "Started", 0, 0.0)
    log.event("CP1", "T1", "Updated", 1, 100.0)
    log.event("CP1", "T2", "Started", 0, 0.0, offline=True)
    views = log.views()
    online, queued = views.transactions.get("T1", "CP1"), views.transactions.get("T2", "CP1")
    assert online is not None and queued is not None
    assert online.offline is False
    assert queued.offline is True


def test_out_of_order_and_gap_details_name_the_right_seq_nos() -> None:
    log = Log()
    log.open("CP1", "ocpp2.0.1")
    log.event("CP1", "T1", "Started", 0, 0.0)
    log.event("CP1", "T1", "Updated", 1, 10.0)
    log.event("CP1", "T1", "Updated", 5, 50.0)  # 2..4 missing
    log.event("CP1", "T1", "Updated", 3, 30.0)  # late: after 5
    transaction = log.views().transactions.get("T1", "CP1")
    assert transaction is not None
    details = {anomaly.kind: anomaly.detail for anomaly in transaction.anomalies}
    assert details["seq_no_gap"] == "seqNo 5 arrived before seqNo 2..4"
    assert details["seq_no_out_of_order"] == "Updated seqNo 3 after seqNo 5"
    assert transaction.seq_no_gaps == [(2, 2), (4, 4)]


def test_a_started_event_arriving_late_opens_the_gaps_before_what_came_first() -> None:
    log = Log()
    log.open("CP1", "ocpp2.0.1")
    log.event("CP1", "T1", "Updated", 3, 30.0)
    log.event("CP1", "T1", "Updated", 4, 40.0)
    log.event("CP1", "T1", "Started", 0, 0.0)  # the queue sent it last
    transaction = log.views().transactions.get("T1", "CP1")
    assert transaction is not None
    assert transaction.seq_no_gaps == [(1, 2)]


def test_only_get_transaction_status_tells_whether_messages_are_queued() -> None:
    log = Log()
    log.open("CP1", "ocpp2.0.1")
    log.event("CP1", "T1", "Started", 0, 0.0)
    log.call(
        "CP1",
        "GetTransactionStatus",
        {"transactionId": "T1"},
        {"ongoingIndicator": True, "messagesInQueue": True},
        by="out",
    )
    # Another request of ours naming the transaction says nothing of the station's queue.
    log.call(
        "CP1", "RequestStopTransaction", {"transactionId": "T1"}, {"status": "Accepted"}, by="out"
    )
    transaction = log.views().transactions.get("T1", "CP1")
    assert transaction is not None and transaction.messages_in_queue is True


def test_an_answer_that_is_not_an_object_is_ignored() -> None:
    """An imported log may hold anything: a CALLRESULT whose payload is not a JSON object
    folds to nothing (and raises nothing), whatever its CALL."""
    log = Log()
    log.open("CP1")
    for number, response in enumerate(([], "text", 7), start=1):
        log.start("CP1", number)
        log.call(
            "CP1",
            "StartTransaction",
            {"connectorId": 2, "idTag": "T", "timestamp": "t", "meterStart": 0},
            response,
        )
    views = log.views()
    assert [t.transaction_id for t in views.transactions.all()] == [1, 2, 3]
