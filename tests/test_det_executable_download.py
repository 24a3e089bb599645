"""executable_download: literal PE/ELF downloads against documents, uploads and duplicates; the golden
Slips test14 downloads; the five attack-chain detections of issue 16 alike on Spark."""

from detkit import analyze_capture, assert_golden, canonical, file_row, http_req, run

MEDIUM_OR_MORE = ("medium", "high", "critical")
#: The detections of issue 16 (items 3, 5, 6) that read Zeek's protocol logs.
CHAIN = ("brute_force", "executable_download", "suspicious_user_agent", "software_change", "tunnel_encapsulation")


def positive_tables():
    return {"http": [http_req(1, ua="Wget/1.21", host="112.255.161.10", uri="/bin.sh",
                              resp_mime_types=["application/x-msdownload"], response_body_len=593)]}


def test_pe_named_like_a_script_from_a_bare_address():
    (f,) = run("executable_download", **positive_tables())
    assert f.key == ("10.0.0.5", "203.0.113.80", "*") and f.severity in MEDIUM_OR_MORE
    assert set(f.score_parts) == {"executable", "by_address", "disguised", "tool_client"}
    assert f.attack == ["T1105", "T1036.008"] and f.metrics["downloads"][0]["name"] == "bin.sh"


def test_installer_from_a_vendor_is_low_and_one_download_per_connection():
    # files.log, pe.log (no hosts) and http.log rows of the same download: one download
    rows_ = [file_row(1), file_row(1.5, uid=None, tx_h=None, rx_h=None, source=None)]
    http = [http_req(1, uid="CF1", host="dl.google.com", uri="/chrome_installer.exe?x=1",
                    resp_mime_types=["application/x-dosexec"])]
    (f,) = run("executable_download", files=rows_, http=http)
    assert f.metrics["count"] == 1 and f.severity == "low" and set(f.score_parts) == {"executable"}
    assert f.external_names == ["dl.google.com"] and f.metrics["downloads"][0]["sha1"] == "ab" * 20


def test_documents_and_uploads_are_no_executable_download():
    http = [http_req(i, resp_mime_types=["application/pdf"], uri=f"/doc{i}.pdf") for i in range(5)]
    upload = [file_row(1, tx_h="10.0.0.5", rx_h="203.0.113.80")]  # an executable leaving: not a download
    assert run("executable_download", http=http, files=upload) == []


def test_lateral_tool_transfer_between_internal_hosts():
    (f,) = run("executable_download", files=[file_row(1, tx_h="10.0.0.9", source="smb", filename="psexesvc.exe")])
    assert f.attack == ["T1570"] and f.internal_hosts == ["10.0.0.5", "10.0.0.9"] and "internal_server" in f.score_parts



def test_golden_slips_test14(tmp_path_factory):
    # bin.sh: a PE (application/x-msdownload) from the bare address 112.255.161.10; Chrome's installer
    fs = analyze_capture("slips/test14-malicious-zeek", tmp_path_factory.mktemp("exe"), only=("executable_download",))
    assert [(f.key, f.severity, sorted(f.score_parts)) for f in fs] == [
        (("10.0.2.15", "147.32.80.7", "*"), "medium", ["by_address", "disguised", "executable"]),
        (("10.0.2.15", "195.113.214.206", "*"), "low", ["executable"])]
    assert_golden("executable_download-slips-test14", fs)


def test_slips_test14_is_the_same_on_spark(tmp_path_factory):
    rel = "slips/test14-malicious-zeek"
    duck = analyze_capture(rel, tmp_path_factory.mktemp("h16"), only=CHAIN)
    spark = analyze_capture(rel, tmp_path_factory.mktemp("h16"), only=CHAIN, backend="pyspark")
    assert len(duck) == 6 and canonical(spark) == canonical(duck)
