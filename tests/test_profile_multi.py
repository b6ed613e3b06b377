"""`profile android` with several phones: the stand-in adb serves two serials; one disconnects mid-run,
the other finishes; a rerun resumes the lost one alone."""
import shutil
from pathlib import Path

from export.nas.latency_table import load_table
from mobile_sdk.cli import main
from profiling.runner import build_host_runner

FAKE_ADB = Path(__file__).parent / "fake_adb" / "adb"


def test_two_phones_in_parallel_one_disconnects(host_run, tmp_path, monkeypatch, capsys):
    root, host_table = host_run
    # the shared programs folder of `--out phones/{serial}.json`, pre-filled with the session's lowered programs
    shutil.copytree(root / "programs", tmp_path / "phones/all.programs")
    monkeypatch.setenv("FAKE_ADB_ROOT", str(tmp_path / "devices"))
    monkeypatch.setenv("FAKE_ADB_SERIAL", "PHONE_A,PHONE_B")
    monkeypatch.setenv("FAKE_ADB_DISCONNECT_AFTER", "PHONE_B=7")
    args = ["profile", "android", "--serial", "PHONE_A", "--serial", "PHONE_B", "--runner", str(build_host_runner()),
            "--adb", str(FAKE_ADB), "--preset", "tiny", "--warmup", "0", "--runs", "3", "--rounds", "1",
            "--threads", "1", "--out", str(tmp_path / "phones/{serial}.json")]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "PHONE_B: device PHONE_B is not available" in captured.err and "rerun to resume" in captured.err
    assert "PHONE_A" not in captured.err.replace("PHONE_A,", "")
    a, b = load_table(tmp_path / "phones/PHONE_A.json"), load_table(tmp_path / "phones/PHONE_B.json")
    assert a.header["status"] == "complete" and set(a.entries) == set(host_table.entries)
    assert b.header["status"] == "partial" and len(b.entries) == 7
    assert a.header["device"]["serial"] == "PHONE_A" and b.header["device"]["serial"] == "PHONE_B"
    assert (tmp_path / "phones/PHONE_A.breakdown/ops.csv").is_file() and "[PHONE_A] wrote" in captured.out

    monkeypatch.delenv("FAKE_ADB_DISCONNECT_AFTER")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"all {len(host_table.entries)} entries already measured" in out
    resumed = load_table(tmp_path / "phones/PHONE_B.json")
    assert resumed.header["status"] == "complete" and set(resumed.entries) == set(host_table.entries)
    assert all(resumed.entries[sig] == e for sig, e in b.entries.items())  # kept, not measured again
    assert load_table(tmp_path / "phones/PHONE_A.json").entries == a.entries
    assert (tmp_path / "devices/PHONE_B/data/local/tmp/mobile_sdk_profile/et_bench_runner").exists()


def test_several_serials_need_a_serial_field_in_out(tmp_path, capsys):
    def run(serials, out):
        return main(["profile", "android", *[a for s in serials for a in ("--serial", s)], "--runner", str(FAKE_ADB),
                     "--preset", "tiny", "--out", str(tmp_path / out)])

    assert run(["A", "B"], "phone.json") == 2
    assert "must contain {serial}" in capsys.readouterr().err
    assert run(["A", "B", "A"], "{serial}.json") == 2
    assert "A given twice" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
