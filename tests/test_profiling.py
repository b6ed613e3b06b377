"""The profiler harness on the tiny preset: host table, resume, the adb path (stand-in adb), breakdown,
validate, estimates and iOS ingestion. One host run is shared (lowering the micro-programs dominates)."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from export.nas.latency_table import TableError, load_table, save_table
from export.nas.model_blocks import CALL_SIGNATURE, model_blocks
from export.nas.efficiency_predictor import LatencyPredictor
from mobile_sdk.config import load_preset
from mobile_sdk.plan import TemporalPlan
from profiling.devices import AdbDevice, DeviceDisconnected, HostDevice, host_cpu
from profiling.harness import profile
from profiling.runner import build_host_runner

FAKE_ADB = Path(__file__).parent / "fake_adb" / "adb"
DATA = Path(__file__).parent / "data"
from tests.conftest import FAST_PROFILE as FAST
from tests.engine_fixtures import engine_cli  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def blocks():
    return model_blocks(load_preset("tiny"))


def test_host_profile_writes_a_complete_measured_table(host_run, blocks):
    root, table = host_run
    on_disk = load_table(root / "tiny.json")
    assert on_disk.header["status"] == "complete"
    assert on_disk.header["provenance"]["kind"] == "measured"
    assert on_disk.header["provenance"]["tool_versions"]["executorch"]
    assert set(on_disk.entries) == set(blocks.signatures())
    for sig, e in on_disk.entries.items():
        assert e.count == FAST["runs"] * FAST["rounds"] and e.mean_ms > 0, sig
        assert e.p10_ms <= e.p50_ms <= e.p90_ms
    # Real programs: the decoder (a whole VAE decoder) takes longer than an empty call.
    assert on_disk.entries[blocks.vae_decoder].mean_ms > on_disk.entries[CALL_SIGNATURE].mean_ms
    assert on_disk.entries[blocks.vae_decoder].weight_bytes > 0
    pred = LatencyPredictor(on_disk, blocks).predict(blocks.config.unet.temporal_plan)
    assert pred.end_to_end_ms > pred.denoise_ms > 0


def test_interrupted_run_resumes_and_keeps_finished_entries(host_run, blocks, tmp_path):
    root, _ = host_run
    table = load_table(root / "tiny.json")
    dropped = sorted(table.entries)[:3]
    kept = sorted(table.entries)[5]
    for sig in dropped:
        del table.entries[sig]
    table.header["status"] = "partial"
    partial = tmp_path / "tiny.json"
    save_table(table, partial)
    seen = []
    resumed = profile(blocks, HostDevice(log=lambda _: None), partial, preset="tiny", work_dir=root / "programs",
                      progress=False, log=seen.append, **FAST)
    assert "3 to measure" in seen[0]
    assert resumed.header["status"] == "complete" and set(resumed.entries) == set(blocks.signatures())
    assert resumed.entries[kept] == table.entries[kept]  # not re-measured


def test_resume_refuses_a_table_with_other_settings(host_run, blocks, tmp_path):
    root, _ = host_run
    other = tmp_path / "t.json"
    shutil.copy(root / "tiny.json", other)
    with pytest.raises(TableError, match="different threads"):
        profile(blocks, HostDevice(log=lambda _: None), other, preset="tiny", work_dir=root / "programs",
                progress=False, log=lambda _: None, warmup=1, runs=5, threads=2)


def test_android_path_with_stand_in_adb(host_run, blocks, tmp_path, monkeypatch):
    """Transport end to end: push runner + programs, run on the 'device', disconnect, resume."""
    root, _ = host_run
    monkeypatch.setenv("FAKE_ADB_ROOT", str(tmp_path / "device"))
    monkeypatch.setenv("FAKE_ADB_DISCONNECT_AFTER", "29")  # runner processes: round 0 (24) + 5 of round 1
    runner = build_host_runner()
    out = tmp_path / "phone.json"

    def run():
        device = AdbDevice("FAKE0001", runner, adb=str(FAKE_ADB))
        return profile(blocks, device, out, preset="tiny", work_dir=root / "programs", etdump_dir=tmp_path / "dumps",
                       progress=False, log=lambda _: None, **FAST)

    with pytest.raises(DeviceDisconnected, match="FAKE0001"):
        run()
    partial = load_table(out)
    assert partial.header["status"] == "partial" and len(partial.entries) == 5
    assert partial.header["device"]["model"] == "Fake Stand-in Phone" and partial.header["device"]["soc"] == "SM8750"
    monkeypatch.delenv("FAKE_ADB_DISCONNECT_AFTER")
    table = run()
    assert table.header["status"] == "complete" and set(table.entries) == set(blocks.signatures())
    for sig in partial.entries:
        assert table.entries[sig] == partial.entries[sig]
    assert (tmp_path / "device/data/local/tmp/mobile_sdk_profile/et_bench_runner").exists()
    assert len(list((tmp_path / "dumps").glob("*.etdp"))) == len(blocks.signatures())  # pulled back from the "phone"


def test_host_cpu_names_the_vector_isa_that_decides_xnnpack_kernels():
    zen3 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu fma avx2\n"
    assert host_cpu(zen3) == "AMD EPYC (family 25 model 1, AVX2, no AVX-512)"
    assert host_cpu(zen3.replace("avx2", "avx2 avx512f")).endswith(", AVX-512)")
    assert host_cpu(zen3 + zen3.replace("AMD EPYC", "second core")).startswith("AMD EPYC (")  # the first processor's
    assert host_cpu("") and "(" not in host_cpu("")  # no /proc/cpuinfo: the platform's own name


def test_adb_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_ROOT", str(tmp_path))
    runner = build_host_runner()
    with pytest.raises(DeviceDisconnected, match="WRONG"):
        AdbDevice("WRONG", runner, adb=str(FAKE_ADB)).info()
    with pytest.raises(Exception, match="runner binary not found"):
        AdbDevice("FAKE0001", tmp_path / "nope", adb=str(FAKE_ADB))


def test_breakdown_from_etdumps(host_run, blocks, tmp_path):
    from profiling.breakdown import write_breakdown
    from profiling.microbench import program_filename

    root, _ = host_run
    uses = blocks.uses(blocks.config.unet.temporal_plan)
    dumps = {s: root / "etdump" / program_filename(s, ".etdp") for s in uses}
    page = write_breakdown(uses, dumps, tmp_path / "bd", "tiny")
    rows = (tmp_path / "bd" / "ops.csv").read_text().splitlines()
    assert rows[0] == "op,ms_per_unet_call,share"
    ops = [r.split(",")[0].strip('"') for r in rows[1:]]
    assert any(op.startswith("Convolution") for op in ops)  # XNNPACK's own op names
    assert (tmp_path / "bd" / "breakdown.png").stat().st_size > 1000 and page.exists()


@pytest.mark.slow
def test_calibrate_then_validate(host_run, blocks, tmp_path):
    """Calibration scales the UNet call by measured/additive; validate reports both and draws the plot."""
    from profiling.validate import calibrate, validate

    root, table = host_run
    section = calibrate(blocks, table, HostDevice(log=lambda _: None), tmp_path / "m", n_plans=1, progress=False,
                        log=lambda _: None)
    assert section["plans"] == 1 and section["unet_call_scale"] == pytest.approx(float(np.median(section["ratios"])), rel=1e-3)
    calibrated = load_table(root / "tiny.json")
    calibrated.header["calibration"] = section
    save_table(calibrated, tmp_path / "cal.json")
    calibrated = load_table(tmp_path / "cal.json")
    plain = LatencyPredictor(calibrated, blocks, calibrated=False).predict({}).unet_step_ms[0]
    assert LatencyPredictor(calibrated, blocks).predict({}).unet_step_ms[0] == pytest.approx(section["unet_call_scale"] * plain)
    # One plan each (whole-UNet lowering dominates this test); the programs folder is shared.
    report = validate(blocks, calibrated, HostDevice(log=lambda _: None), tmp_path / "m", n_plans=1, progress=False,
                      log=lambda _: None)
    assert report["plans"] == 1 and report["rows"][0]["measured_unet_call_ms"] > 0
    assert report["rows"][0]["plans"] == [TemporalPlan.resolve(blocks.config.unet.temporal_plan, blocks.config.unet).to_dict()]
    assert report["calibration"] == section and report["end_to_end_ape_percent"]["median"] >= 0
    assert (tmp_path / "m" / "validate.png").exists()
    assert json.loads((tmp_path / "m" / "validate.json").read_text())["plans"] == 1


def test_estimated_tables_are_labelled_and_complete(blocks):
    from profiling.estimate import estimate_table

    for device in ("iphone-16-pro-max", "snapdragon-8-elite"):
        table = estimate_table(blocks, device, "tiny")
        assert table.header["provenance"]["kind"] == "estimated"
        assert "roofline" in table.header["provenance"]["method"] and table.header["provenance"]["sources"]
        assert "ESTIMATED" in table.describe()
        assert set(table.entries) == set(blocks.signatures())
        pred = LatencyPredictor(table, blocks)
        # FLOP-heavier ops cost more under the roofline: joint attention over all frames vs none at all.
        assert pred.predict({"*": "attn3d"}).denoise_ms > pred.predict({}).denoise_ms


def test_shipped_estimated_tables_match_the_generator():
    """export/nas/tables/*.json are regenerated by `mobile-sdk profile estimate`; they must not drift. The
    demo model's hold every elastic sub-network's blocks at the resolutions `header.elastic` lists."""
    from export.nas.model_blocks import elastic_blocks
    from profiling.estimate import estimate_table

    shipped = sorted((Path(__file__).parents[1] / "export" / "nas" / "tables").glob("*.json"))
    assert len(shipped) >= 4
    assert all("elastic" in load_table(p).header for p in shipped if p.name.startswith("small."))
    for path in shipped:
        table = load_table(path)
        h = table.header
        cfg = load_preset(h["preset"])
        blocks = (elastic_blocks(cfg, [tuple(r) for r in h["elastic"]["resolutions"]]) if "elastic" in h
                  else model_blocks(cfg))
        fresh = estimate_table(blocks, h["provenance"]["device_key"], h["preset"])
        assert fresh.entries.keys() == table.entries.keys(), path
        for sig, e in fresh.entries.items():
            assert table.entries[sig].mean_ms == pytest.approx(e.mean_ms, rel=1e-6), (path, sig)


def test_ingest_sample_coreml_results(tmp_path, blocks):
    from profiling.ingest import ingest_results

    table = ingest_results(DATA / "coreml_results_sample.json")
    assert table.header["provenance"]["kind"] == "measured" and table.header["compute_unit"] == "cpuAndNeuralEngine"
    assert table.header["device"]["model"] == "iPhone 16 Pro Max"
    assert blocks.text_encoder in table.entries and table.entries[blocks.text_encoder].count == 10
    save_table(table, tmp_path / "ios.json")
    data = json.loads((DATA / "coreml_results_sample.json").read_text())
    data["results"][0]["times_ms"] = []
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(TableError, match=r"bad.json: results\[0\].*times_ms"):
        ingest_results(bad)


def test_profile_cli_estimate(tmp_path):
    from mobile_sdk.cli import main

    out = tmp_path / "t.json"
    assert main(["profile", "estimate", "--preset", "tiny", "--device", "snapdragon-8-elite", "--out", str(out)]) == 0
    assert load_table(out).header["provenance"]["kind"] == "estimated"
    assert main(["profile", "estimate", "--preset", "tiny", "--device", "pixel-1", "--out", str(out)]) == 2


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="checks the Linux refusal message")
def test_coreml_timing_refuses_off_macos(tmp_path):
    from mobile_sdk.cli import main

    assert main(["profile", "coreml", "--programs", str(tmp_path), "--out", str(tmp_path / "t.json")]) == 2


def test_android_end_to_end_benchmark_over_the_stand_in_adb(tmp_path, monkeypatch, step_aware_package, engine_cli, capsys):
    """The engine CLI and the package go over adb, the engine's own benchmark runs there, its result comes back
    checked against the pipeline-benchmark schema, with the device as getprop names it."""
    from mobile_sdk.cli import main
    from mobile_sdk.contract.validate import validate_document

    monkeypatch.setenv("FAKE_ADB_ROOT", str(tmp_path / "device"))
    out = tmp_path / "phone.json"
    args = ["profile", "android-e2e", "--serial", "FAKE0001", "--adb", str(FAKE_ADB), "--engine", str(engine_cli),
            "--package", str(step_aware_package[1]), "--warmup", "0", "--runs", "2", "--threads", "1", "--out", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    validate_document(result, "pipeline_benchmark", out)
    assert result["device"]["model"] == "Fake Stand-in Phone" and result["device"]["soc"] == "SM8750"
    assert result["runs"] == 2 and len(result["steps_ms"]) == 4
    assert "wrote" in capsys.readouterr().out
    pushed = tmp_path / "device/data/local/tmp/mobile_sdk_profile/packages/tiny.mobilepkg/manifest.json"
    assert pushed.read_bytes() == (step_aware_package[1] / "manifest.json").read_bytes()
    monkeypatch.setenv("FAKE_ADB_SERIAL", "OTHER")
    assert main(args) == 2
    assert "device FAKE0001 is not available" in capsys.readouterr().err
