"""Writers of a SQLite register queue for the file across processes: a
second worker process's write waits, in the kernel, for the first's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from register.writers import Writers

# Acquires the right to write, then prints the instant it got it.
OTHER_PROCESS = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from register.writers import Writers
    writers = Writers(Path(sys.argv[1]))
    print("waiting", flush=True)
    with writers:
        print(time.time(), flush=True)
    """
)


def test_a_writer_in_another_process_waits_for_the_first(tmp_path: Path) -> None:
    database = tmp_path / "register.sqlite3"
    writers = Writers(database)
    with writers:
        other = subprocess.Popen(
            [sys.executable, "-c", OTHER_PROCESS, str(database)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parent.parent,
        )
        assert other.stdout is not None
        assert other.stdout.readline().strip() == "waiting"
        time.sleep(0.3)  # it stays waiting while this process writes
        released = time.time()
    got = float(other.stdout.readline())
    assert other.wait(timeout=30) == 0
    assert got >= released
    # And this process writes again once the other has finished.
    with writers:
        pass
    writers.close()


def test_writers_in_one_process_take_turns(tmp_path: Path) -> None:
    writers = Writers(tmp_path / "register.sqlite3")
    inside = 0
    most = 0
    guard = threading.Lock()

    def write() -> None:
        nonlocal inside, most
        for _ in range(200):
            with writers:
                with guard:
                    inside += 1
                    most = max(most, inside)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 1
    writers.close()
