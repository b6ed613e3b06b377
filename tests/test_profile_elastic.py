"""`mobile-sdk profile ... --resolutions` (elastic tables) and `profile validate --space`: the table's
entries and header.elastic, and one-line errors for bad values. Nothing here lowers or measures."""
import numpy as np
import pytest

from export.nas.efficiency_predictor import ElasticPredictor
from export.nas.elastic import SubNet
from export.nas.genome import AXES, GenomeSpace
from export.nas.latency_table import LatencyTable, load_table, save_table
from export.nas.model_blocks import elastic_blocks, model_blocks
from mobile_sdk.cli import main
from mobile_sdk.config import load_preset
from profiling.estimate import estimate_table
from profiling.harness import profile, table_header

FULL, SMALLER = (32, 32), (16, 16)  # tiny's own size and one below


@pytest.fixture(scope="module")
def tiny():
    return load_preset("tiny")


@pytest.fixture(scope="module")
def eblocks(tiny):
    return elastic_blocks(tiny, [FULL, SMALLER])


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_estimate_with_resolutions_writes_an_elastic_table(tmp_path, tiny, eblocks, capsys):
    out = tmp_path / "t.json"
    args = ["profile", "estimate", "--preset", "tiny", "--device", "snapdragon-8-elite", "--out", str(out)]
    assert main(args + ["--resolutions", "16x16"]) == 0
    table = load_table(out)
    assert table.header["provenance"]["kind"] == "estimated"
    assert table.header["elastic"]["resolutions"] == [list(FULL), list(SMALLER)]
    assert table.header["resolution"]["height"] == FULL[0]
    assert set(table.entries) == set(eblocks.signatures())
    assert set(model_blocks(tiny).signatures()) < set(table.entries)
    # The table prices any sub-network at either size: the narrowest, shallowest at 16 px is cheaper.
    space = GenomeSpace(tiny.unet, eblocks.resolutions, AXES)
    predictor = ElasticPredictor(table, eblocks, space)
    full = space.encode(tiny.unet.temporal_plan, SubNet.full(tiny.unet), FULL)
    small = space.encode({}, SubNet.smallest(tiny.unet), SMALLER)
    ms = predictor.denoise_ms(np.stack([full, small])[:, None])
    assert ms[1] < ms[0]
    assert "ESTIMATE for the preset's plan" in capsys.readouterr().out
    # Without the flag: today's table, the model alone.
    assert main(args) == 0
    table = load_table(out)
    assert "elastic" not in table.header and set(table.entries) == set(model_blocks(tiny).signatures())


@pytest.mark.parametrize("value, needle", [("16y16", "'16y16'"), ("16x16,", "''"), ("8x8", "8x8")])
def test_bad_resolutions_are_one_line_errors(tmp_path, capsys, value, needle):
    out = tmp_path / "t.json"
    assert main(["profile", "estimate", "--preset", "tiny", "--device", "snapdragon-8-elite", "--out", str(out),
                 "--resolutions", value]) == 2
    _one_line_error(capsys, "--resolutions", needle)
    assert not out.exists()


@pytest.mark.parametrize("extra, needles", [
    (["--space", "temporal,colour"], ["--space", "'colour'"]),
    (["--space", "width", "--resolutions", "16x16"], ["--resolutions needs the resolution axis"]),
    (["--space", "width,resolution", "--resolutions", "16y16"], ["--resolutions", "'16y16'"]),
    (["--space", "width", "--plan-file", "p.json"], ["--plan-file", "--space width"]),
])
def test_validate_space_argument_errors(tmp_path, capsys, extra, needles):
    """Argument errors come before the table is read (the table path here does not exist)."""
    assert main(["profile", "validate", "--preset", "tiny", "--table", str(tmp_path / "none.json")] + extra) == 2
    _one_line_error(capsys, *needles)


class _NoRuns:
    """A device whose table is already complete: profile() must not lower or run anything."""

    def __init__(self, info):
        self._info = info

    def info(self):
        return self._info

    def prepare(self, programs):
        assert not programs

    def run(self, *args, **kwargs):
        raise AssertionError("nothing should be measured")


def test_host_profile_header_lists_the_elastic_resolutions(tmp_path, tiny, eblocks):
    """`profile host --resolutions` writes header.elastic (what `search --space ...,resolution` reads). Entries
    are pre-filled (resume), so this checks the header without measuring."""
    info = {"device": {"model": "stand-in"}, "runtime": {"name": "none"}, "compute_unit": "cpu"}
    out = tmp_path / "host.json"
    header = table_header(info, "tiny", tiny, "none", 1, 0, 1, 1, "test")
    save_table(LatencyTable(header=header, entries=estimate_table(eblocks, "snapdragon-8-elite", "tiny").entries), out)
    table = profile(eblocks, _NoRuns(info), out, preset="tiny", threads=1, warmup=0, runs=1, rounds=1,
                    progress=False, log=lambda *_: None)
    assert table.header["elastic"] == eblocks.header()
    assert load_table(out).header["elastic"]["resolutions"] == [list(FULL), list(SMALLER)]
