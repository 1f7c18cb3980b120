"""Several audio frames per socket write: encoding, the queue's runs, and the replay buffer's view of a batch.

An unpaced sender with a deep queue writes runs of frames in one go. On the
wire nothing changes: every frame keeps its own boundaries and its own fresh
mask key, which websocket-client's own frame parser checks here. A batch whose
write fails counts as not sent, frame by frame, so the next connection sends it
as a first send and nothing is counted twice.
"""

from __future__ import annotations

import gc
import threading

import pytest
import websocket
from hypothesis import given, settings
from hypothesis import strategies as st

from cartesia_sync._audio_queue import AudioFrame, AudioQueue, Command, KeepaliveFrame
from cartesia_sync._frames import OPCODE_BINARY, encode_binary_frames
from cartesia_sync._replay import ReplayBuffer


class _KeyRecordingReader(websocket._abnf.frame_buffer):
    """websocket-client's frame reader, keeping each frame's mask key as it reads it."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self.keys: list[bytes] = []
        super().__init__(self._read, skip_utf8_validation=True)

    def _read(self, size: int) -> bytes:
        chunk, self._data = bytes(self._data[:size]), self._data[size:]
        return chunk

    def recv_mask(self) -> None:
        super().recv_mask()
        self.keys.append(bytes(self.mask_value))

    def frames(self) -> list[websocket.ABNF]:
        out = []
        while self._data:
            out.append(self.recv_frame())
        return out


def decode(data: bytes) -> tuple[list[websocket.ABNF], list[bytes]]:
    reader = _KeyRecordingReader(data)
    return reader.frames(), reader.keys


lengths = st.one_of(st.integers(0, 300), st.sampled_from([124, 125, 126, 127, 3200, 65535, 65536, 65540]))


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(lengths, min_size=1, max_size=12), seed=st.binary(min_size=1, max_size=8))
def test_a_batch_decodes_to_the_same_frames_each_masked(sizes, seed):
    payloads = [(seed * (size // len(seed) + 1))[:size] for size in sizes]
    frames, keys = decode(encode_binary_frames(payloads))
    assert [frame.data for frame in frames] == payloads
    assert all(frame.opcode == OPCODE_BINARY and frame.fin and frame.mask_value for frame in frames)
    assert len(keys) == len(payloads)


def test_every_frame_of_a_batch_gets_its_own_key():
    frames, keys = decode(encode_binary_frames([bytes(3200)] * 20))  # the one-numpy-operation path
    assert [frame.data for frame in frames] == [bytes(3200)] * 20
    assert len(set(keys)) == 20  # 20 random 4-byte keys collide with probability ~4e-8


def fill(queue: AudioQueue, *items: object) -> None:
    for item in items:
        if isinstance(item, Command):
            queue.put_command(item)
        else:
            queue.put_audio(item, timeout=1)


def test_the_queue_hands_out_runs_of_audio_that_stop_at_a_command_and_at_the_byte_limit():
    queue = AudioQueue(capacity=100_000)
    finalize = Command("finalize", expects_answer=True)
    fill(queue, b"a" * 100, b"b" * 100, b"c" * 100, finalize, b"d" * 100, b"e" * 500)
    assert [bytes(item) for item in queue.get(0, max_audio_bytes=250)] == [b"a" * 100, b"b" * 100]
    assert [bytes(item) for item in queue.get(0, max_audio_bytes=10_000)] == [b"c" * 100]  # the command ends it
    assert queue.get(0, max_audio_bytes=10_000) == [finalize]  # a command comes alone
    assert [bytes(item) for item in queue.get(0, max_audio_bytes=0)] == [b"d" * 100]  # 0: one frame (paced)
    assert [bytes(item) for item in queue.get(0, max_audio_bytes=10)] == [b"e" * 500]  # a big frame still comes
    assert queue.audio_bytes == 0 and queue.get(0) == []


def test_taking_a_run_wakes_a_producer_waiting_for_room():
    queue = AudioQueue(capacity=1000)
    fill(queue, *[bytes(100)] * 10)
    done = threading.Event()
    producer = threading.Thread(
        target=lambda: (queue.put_audio(bytes(100), timeout=5), done.set()), name="test-producer"
    )
    producer.start()
    assert not done.wait(0.2)  # full: it waits
    assert len(queue.get(0, max_audio_bytes=600)) == 6
    assert done.wait(5)
    producer.join(5)
    assert queue.audio_bytes == 500


def frames(*sizes: int) -> list[tuple[AudioFrame, bool]]:
    return [(AudioFrame(bytes(size)), False) for size in sizes]


def test_a_batch_whose_write_failed_is_sent_again_as_first_sends():
    replay = ReplayBuffer(limit=1_000_000, sample_bytes=2, bytes_per_second=32000)
    written = frames(100, 100)
    replay.writing(written)
    replay.wrote()
    failed = frames(200, 200, 200)
    replay.writing(failed)  # the connection died during this write: no wrote()
    taken = replay.take()
    assert [(bytes(item), again) for item, again in taken.items] == [(bytes(100), True)] * 2 + [(bytes(200), False)] * 3
    assert taken.replayed_bytes == 200 and taken.first_send_bytes == 600 and taken.resume_at == 0


def test_a_resent_batch_keeps_each_frame_marked_as_a_replay():
    replay = ReplayBuffer(limit=1_000_000, sample_bytes=2, bytes_per_second=32000)
    resent = [(AudioFrame(bytes(100)), True), (AudioFrame(bytes(100)), True), (AudioFrame(bytes(100)), False)]
    replay.writing(resent)  # fails again
    assert [again for _, again in replay.take().items] == [True, True, False]


def test_acknowledging_inside_a_batch_keeps_only_the_rest():
    replay = ReplayBuffer(limit=1_000_000, sample_bytes=2, bytes_per_second=32000)
    replay.writing(frames(3200, 3200, 3200))
    replay.wrote()
    replay.word_end(0.15)  # 4800 bytes in: half of the second frame
    taken = replay.take()
    assert [len(item) for item, _ in taken.items] == [1600, 3200]
    assert taken.resume_at == 4800 and taken.gap == 0


def test_the_bound_lets_go_of_the_oldest_frames_of_a_big_batch_but_keeps_its_commands():
    replay = ReplayBuffer(limit=500, sample_bytes=2, bytes_per_second=32000)
    finalize = Command("finalize", expects_answer=True)
    replay.writing(frames(200, 200) + [(finalize, False)] + frames(200, 200))
    replay.wrote()
    taken = replay.take()
    assert [item for item, _ in taken.items][0] is finalize  # carried: it still needs its answer
    assert [len(item) for item, _ in taken.items[1:]] == [200, 200]
    assert taken.gap == 400


@pytest.mark.parametrize("size", [2, 6, 3202])
def test_payloads_that_are_not_whole_words_take_the_per_frame_path(size):
    payloads = [bytes(range(256)) * (size // 256) + bytes(range(size % 256))] * 3
    decoded, keys = decode(encode_binary_frames(payloads))
    assert [frame.data for frame in decoded] == payloads and len(keys) == 3


def test_queued_and_kept_audio_is_invisible_to_the_garbage_collector():
    # Hundreds of sessions hold hundreds of thousands of frames; tracked objects there cause full
    # collections of 100 ms and more, which every paced session feels as a late frame.
    queue = AudioQueue(capacity=100_000)
    fill(queue, bytes(3200), bytearray(3200), memoryview(bytes(3200)))
    taken = queue.get(0, max_audio_bytes=10_000)
    assert len(taken) == 3 and all(type(item) is bytes and not gc.is_tracked(item) for item in taken)
    replay = ReplayBuffer(limit=1_000_000, sample_bytes=2, bytes_per_second=32000)
    replay.writing([(item, False) for item in taken])
    replay.wrote()
    assert not any(gc.is_tracked(item) for item in replay._items)  # the buffer adds no wrapper per frame


def test_a_keepalive_frame_keeps_its_kind_through_a_replay():
    replay = ReplayBuffer(limit=1_000_000, sample_bytes=2, bytes_per_second=32000)
    silence = KeepaliveFrame(bytes(3200))
    replay.writing([(silence, False)])  # the write failed
    ((item, again),) = replay.take().items
    assert isinstance(item, KeepaliveFrame) and again is False and item == bytes(3200)


def test_mask_keys_come_from_the_os_random_source_and_are_never_handed_out_twice(monkeypatch):
    from cartesia_sync import _frames as frames

    fetched = []

    def counting_urandom(size):  # stands in for the OS source, so reuse would be visible
        block = b"".join((len(fetched) * 100_000 + i).to_bytes(4, "big") for i in range(size // 4))
        fetched.append(size)
        return block

    monkeypatch.setattr(frames.os, "urandom", counting_urandom)
    keys = frames._MaskKeys()
    taken = [keys.take() for _ in range(2500)] + [keys.take(20)[i : i + 4] for i in range(0, 80, 4)]
    assert all(len(key) == 4 for key in taken)
    assert len(set(taken)) == len(taken)  # no key repeats, across refills too
    assert fetched == [4096, 4096, 4096]  # one system call per 1,024 keys
