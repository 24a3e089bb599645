"""Protocol records from packet captures (``abfluss.dlp.sessions``): SMTP AUTH and FTP logins,
HTTP requests with their status and executables by magic bytes, SSH banners, on real tools'
captures (examples/protocols/, made by lab/protocols.py, truth in protocols-truth.json); the
detections that read them (brute_force, executable_download, software_change) give the same
kind of findings as on Zeek logs."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pyarrow as pa
import pytest

from abfluss.dlp.inspect import Settings as InspectSettings
from abfluss.dlp.sessions import executable
from abfluss.readers import pcap
from abfluss.readers.base import ReadReport
from conftest import ROOT, data
from detkit import analyze_capture, assert_golden

LAB = ROOT / "examples" / "protocols"
TRUTH = json.loads((LAB / "protocols-truth.json").read_text())
RUNS = TRUTH["runs"]
WS, SRV = TRUTH["workstation"], TRUTH["server"]
PROTOCOL_TABLES = ("http", "files", "logins", "software")


def _read(name: str, key: bytes | None = None, settings=None) -> dict[str, pa.Table]:
    out: dict[str, list] = {}
    for table, t in pcap.read(LAB / f"{name}.pcap", ReadReport(name), inspect_key=key, inspect_settings=settings):
        out.setdefault(table, []).append(t)
    return {k: pa.concat_tables(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def tables() -> dict[str, dict[str, pa.Table]]:
    return {name: _read(name) for name in RUNS}


def test_smtp_auth_refusals_and_the_success(tables):
    run = RUNS["smtp-auth"]
    rows = tables["smtp-auth"]["logins"].to_pylist()
    assert [(r["app"], r["user"], r["result"], r["attempts"]) for r in rows] == \
        [("smtp", run["user"], "failure", 1)] * run["refused"] + [("smtp", run["user"], "success", 1)] * run["accepted"]
    assert {r["reply"] for r in rows} == {"535 5.7.8 Authentication credentials invalid",
                                          "235 2.7.0 Authentication successful"}
    assert {(r["orig_h"], r["resp_h"], r["resp_p"]) for r in rows} == {(WS, SRV, 25)}
    flow_uids = set(tables["smtp-auth"]["flows"].column("uid").to_pylist())
    assert {r["uid"] for r in rows} <= flow_uids and len({r["uid"] for r in rows}) == len(rows)


def test_ftp_530_then_230(tables):
    run = RUNS["ftp-login"]
    rows = tables["ftp-login"]["logins"].to_pylist()
    assert [(r["app"], r["user"], r["result"], r["reply"][:3]) for r in rows] == \
        [("ftp", run["user"], "failure", "530")] * run["refused"] + [("ftp", run["user"], "success", "230")]


def test_http_401_series_and_executables_by_magic_bytes(tables):
    run = RUNS["http"]
    http = tables["http"]["http"].sort_by("ts").to_pylist()
    denied = [r for r in http if r["status_code"] == 401]
    assert len(denied) == run["denied"] == 25
    assert {(r["method"], r["host"], r["uri"], r["user_agent"]) for r in denied} == {("GET", SRV, "/admin/", "curl/7.88.1")}
    downloads = {r["uri"]: r for r in http if r["status_code"] == 200}
    want = run["downloads"]
    assert {u: (r["resp_mime_types"], r["response_body_len"]) for u, r in downloads.items()} == {
        "/dl/update": (["application/x-executable"], want["/dl/update"]["bytes"]),
        "/dl/invoice.pdf": (["application/x-dosexec"], want["/dl/invoice.pdf"]["bytes"])}  # served as application/pdf
    files = {r["filename"]: r for r in tables["http"]["files"].to_pylist()}
    assert {n: (r["executable"], r["size"], r["sha1"], r["sha256"], r["tx_h"], r["rx_h"], r["source"])
            for n, r in files.items()} == {
        Path(u).name: (w["format"], w["bytes"], w["sha1"], w["sha256"], SRV, WS, "http") for u, w in want.items()}
    assert {r["uid"] for r in files.values()} == {downloads[u]["uid"] for u in want}
    assert set(tables["http"]["http"].column("uid").to_pylist()) <= set(tables["http"]["flows"].column("uid").to_pylist())


def test_ssh_banners_of_two_clients_and_the_server(tables):
    run = RUNS["ssh"]
    rows = tables["ssh"]["software"].to_pylist()
    openssh = run["clients"][0].split(",")[0]  # "OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL 3.0 ..."
    libssh2 = "libssh2_" + run["clients"][1].split("libssh2/")[1].split()[0]
    dropbear = "dropbear_" + run["server"].split(" v")[1]
    assert [(r["host"], r["host_p"], r["kind"], r["name"], r["version"]) for r in rows] == [
        (WS, None, "ssh-client", "OpenSSH", openssh), (SRV, 22, "ssh-server", "dropbear", dropbear),
        (WS, None, "ssh-client", "libssh2", libssh2), (SRV, 22, "ssh-server", "dropbear", dropbear)]


@pytest.mark.parametrize("name", ["smtp-auth", "http", "ssh"])
def test_same_records_with_and_without_inspection_and_unread_sides(tables, name):
    """Without inspection (no key) the records are the same, and no dlp/inspected rows come; with
    internal networks the server's replies (inbound) are parsed, not read, into the same rows."""
    plain = tables[name]
    bare = _read(name)
    inside = _read(name, bytes(32), InspectSettings(internal_networks=("10.0.0.0/8",)))
    for t in PROTOCOL_TABLES:
        if t in plain:
            assert bare[t].equals(plain[t]) and inside[t].equals(plain[t]), t
    assert "dlp" not in bare and "inspected" not in bare
    assert "inspected" in inside


def test_ftp_data_transfers_of_windows_programs():
    """Zeek's pe.pcap: four programs fetched over FTP (passive mode); each data connection gets
    its file name from the control connection's RETR, its size as the server announced it
    ("150 Opening BINARY mode data connection for NOTEPAD.EXE (68608 bytes)"). MSVIDEO.DLL is a
    16-bit NE DLL: an MZ program too."""
    out = {}
    for table, t in pcap.read(data("zeek-traces/pe.pcap"), ReadReport("pe.pcap")):
        out.setdefault(table, []).append(t)
    files = pa.concat_tables(out["files"]).to_pylist()
    assert [(f["filename"], f["size"], f["executable"], f["source"], f["tx_h"], f["rx_h"]) for f in files] == [
        (name, size, "pe", "ftp", "192.168.1.32", "192.168.1.31") for name, size in
        (("MSVIDEO.DLL", 126912), ("NOTEPAD.EXE", 68608), ("VMwareXferlogs.exe", 43568), ("test1.bin", 131080))]
    assert all(len(f["sha256"]) == 64 for f in files)


def test_executable_magic():
    pe = bytearray(b"MZ" + bytes(0x3A) + struct.pack("<I", 0x80) + bytes(0x40) + b"PE\0\0" + bytes(16))
    assert executable(bytes(pe)) == "pe"
    assert executable(b"MZ" + bytes(200)) is None  # MZ without a PE header: not a program we name
    assert executable(b"MZ" + bytes(0x3A) + struct.pack("<I", 0x40) + b"NE\x05<") == "pe"  # 16-bit Windows
    assert executable(b"\x7fELF\x02\x01\x01") == "elf"
    assert executable(b"\xcf\xfa\xed\xfe\x07") == "macho"
    assert executable(b"%PDF-1.7") is None


@pytest.fixture(scope="module")
def findings(tmp_path_factory):
    caps = tuple(str(LAB / RUNS[n]["capture"]) for n in sorted(RUNS))
    return analyze_capture(caps, tmp_path_factory.mktemp("protocols"),
                           only=("brute_force", "executable_download", "software_change"))


def test_golden_brute_force_on_pcap(findings):
    fs = [f for f in findings if f.detection == "brute_force"]
    assert sorted((f.channel, f.metrics.get("login_failures"), f.metrics.get("http_denied")) for f in fs) == [
        ("ftp", RUNS["ftp-login"]["refused"], None), ("http", None, RUNS["http"]["denied"]),
        ("smtp", RUNS["smtp-auth"]["refused"], None)]
    assert all(f.internal_hosts == [WS] and f.external_hosts == [SRV] for f in fs)
    assert_golden("brute_force-lab-protocols", fs)


def test_golden_executable_download_on_pcap(findings):
    fs = [f for f in findings if f.detection == "executable_download"]
    assert len(fs) == 1 and fs[0].internal_hosts == [WS]
    assert {d["name"]: d["sha1"] for d in fs[0].metrics["downloads"]} == {
        Path(u).name: w["sha1"] for u, w in RUNS["http"]["downloads"].items()}
    assert_golden("executable_download-lab-http", fs)


def test_golden_software_change_on_pcap(findings):
    fs = [f for f in findings if f.detection == "software_change"]
    assert [(f.internal_hosts, f.metrics["programs"]) for f in fs] == [([WS], 2)]
    assert_golden("software_change-lab-ssh", fs)
