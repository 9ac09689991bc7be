"""interir.memory: glibc allocator settings for the forward (benchmarks/README.md)."""
import sys


def test_keep_freed_memory_sets_glibc_thresholds_or_is_a_no_op(monkeypatch):
    from interir import memory

    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

        def malloc_trim(self, pad):
            calls.append(("trim", pad))
            return 1

    monkeypatch.setattr(memory, "_LIBC", FakeLibc())
    assert memory.keep_freed_memory() is True
    assert memory.limit_arenas(2) is True
    memory.trim()
    assert calls == [(memory.M_MMAP_THRESHOLD, 32 << 20), (memory.M_TRIM_THRESHOLD, 512 << 20),
                     (memory.M_ARENA_MAX, 2), ("trim", 0)]
    monkeypatch.setattr(memory, "_LIBC", False)  # no glibc (macOS, Windows, musl)
    assert memory.keep_freed_memory() is False and memory.limit_arenas(2) is False
    memory.trim()
    monkeypatch.setattr(memory, "_LIBC", None)  # the real one, where there is one: values accepted
    if sys.platform.startswith("linux") and memory.libc():
        assert memory.keep_freed_memory() is True
