"""Our fast Community ID against the reference implementation, on every flow of real captures."""

from __future__ import annotations

import communityid
import pyarrow as pa
import pytest

from abfluss.readers import pcap
from abfluss.readers._community_id import community_id
from abfluss.readers.base import ReadReport
from conftest import data

REF = communityid.CommunityID()
MAKE = {6: communityid.FlowTuple.make_tcp, 17: communityid.FlowTuple.make_udp, 132: communityid.FlowTuple.make_sctp}


@pytest.mark.parametrize("capture", ["zeek-traces/wikipedia.pcap", "slips/test-cc/test-cc-capture-1.pcap",
                                     "zeek-traces/Teredo.pcap"])
def test_matches_reference_on_real_flows(capture):
    flows = pa.concat_tables(t for name, t in pcap.read(data(capture), ReadReport(capture)) if name == "flows")
    checked = 0
    for f in flows.to_pylist():
        proto = {"tcp": 6, "udp": 17, "sctp": 132}.get(f["proto"])
        if proto is None:
            assert f["community_id"] is None
            continue
        ref = REF.calc(MAKE[proto](f["orig_h"], f["resp_h"], f["orig_p"], f["resp_p"]))
        assert f["community_id"] == ref
        assert community_id(proto, f["resp_h"], f["orig_h"], f["resp_p"], f["orig_p"]) == ref  # direction-free
        checked += 1
    assert checked >= 10


def test_spec_vector():
    # From the Community ID spec's baseline (tcp.pcap, seed 0)
    assert community_id(6, "128.232.110.120", "66.35.250.204", 34855, 80) == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
