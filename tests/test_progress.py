"""read_position: how far this process or a child has read an input (the progress bar's source)."""

import subprocess
import sys
import time

from abfluss.progress import read_position


def test_position_in_this_process_and_in_a_child(tmp_path):
    p = tmp_path / "input.bin"
    p.write_bytes(b"x" * 100_000)
    assert read_position(p) is None
    with open(p, "rb", buffering=0) as f:
        f.read(12_345)
        assert read_position(p) == 12_345
    child = subprocess.Popen([sys.executable, "-c", f"f = open({str(p)!r}, 'rb', buffering=0); f.read(54_321); "
                              "print('ok', flush=True); import time; time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ok"
        deadline = time.monotonic() + 5
        while read_position(p) != 54_321 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert read_position(p) == 54_321
    finally:
        child.kill()
        child.wait()
