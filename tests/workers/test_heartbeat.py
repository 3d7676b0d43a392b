"""workers.heartbeat on the real Redis: the reader's view of live and dead workers."""

from __future__ import annotations

import time
import uuid

import pytest

from workers.heartbeat import HeartbeatPublisher, HeartbeatStore, TrialRef

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_url: str) -> HeartbeatStore:
    return HeartbeatStore.from_url(redis_url, prefix=f"test-hb-{uuid.uuid4().hex[:8]}", ttl_s=0.5)


def test_a_silent_worker_goes_offline_and_its_trial_key_expires(store: HeartbeatStore) -> None:
    trial = TrialRef(study_id=5, trial_id=6, attempt=0, task_id="trial-5-6-0")
    store.write(
        worker="gone",
        device="cuda:0",
        trial=trial,
        started_at=time.time(),
        progress={"step": 10, "loss": 2.5},
    )
    (beat,) = store.workers()
    assert (beat.worker, beat.device, beat.trial) == ("gone", "cuda:0", trial)
    assert store.trial(5, 6).step == 10 and store.trial(5, 6).loss == 2.5
    time.sleep(0.7)  # longer than the TTL, and no further beat
    assert store.workers() == []
    assert [b.worker for b in store.workers(online_only=False)] == ["gone"]
    assert store.trials([(5, 6), (5, 7)]) == {(5, 6): None, (5, 7): None}
    assert store.prune(older_than_s=0.5) == 1
    assert store.workers(online_only=False) == []


def test_a_publisher_keeps_a_slow_trial_alive(redis_url: str) -> None:
    store = HeartbeatStore.from_url(redis_url, prefix=f"test-hb-{uuid.uuid4().hex[:8]}", ttl_s=2.0)
    publisher = HeartbeatPublisher(store, worker="busy", device="cpu", interval_s=0.1).start()
    try:
        publisher.begin_trial(TrialRef(study_id=1, trial_id=2))
        publisher.progress(step=3, loss=1.5)
        time.sleep(2.5)  # longer than the TTL: only the periodic beats keep it alive
        beat = store.trial(1, 2)
        assert beat is not None and beat.age_s < 2.0 and (beat.step, beat.loss) == (3, 1.5)
        assert store.workers()[0].trial == TrialRef(study_id=1, trial_id=2)
        publisher.end_trial()
        assert store.trial(1, 2) is None
    finally:
        publisher.stop()


def test_attempts_are_claimed_until_retired(store: HeartbeatStore) -> None:
    assert store.attempts_started(["trial-1-2-0", "trial-1-2-1"]) == set()
    assert store.claim_attempt("trial-1-2-0", keep_s=60) is True  # taken: run it
    assert store.attempts_started(["trial-1-2-0", "trial-1-2-1"]) == {"trial-1-2-0"}
    store.retire_attempts(["trial-1-2-0"], keep_s=60)
    assert store.claim_attempt("trial-1-2-0", keep_s=60) is False  # redelivered: drop it
    assert store.claim_attempt("trial-1-2-1", keep_s=60) is True  # the next attempt runs


def test_consumers_count_live_and_idle_workers_per_queue(store: HeartbeatStore) -> None:
    busy = TrialRef(study_id=1, trial_id=2)
    store.write(worker="a", device="cpu", trial=None, started_at=None, queues=("trials", "cpu"))
    store.write(worker="b", device="cuda:0", trial=busy, started_at=1.0, queues=("trials", "gpu"))
    counts = store.consumers()
    assert {name: (c.live, c.idle) for name, c in counts.items()} == {
        "trials": (2, 1),
        "cpu": (1, 1),
        "gpu": (1, 0),
    }
    time.sleep(0.7)  # both silent past the TTL: nobody consumes anything
    assert store.consumers() == {}
