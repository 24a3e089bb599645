"""software_change: literal SSH client changes (another program within minutes, an upgrade weeks apart)
against one version, external servers and unwatched kinds; the golden Slips test15."""

from detkit import analyze_capture, assert_golden, run, software


def positive_tables():
    return {"software": [software(0, "OpenSSH_9.6p1"), software(60, "libssh_0.9.6", name="libssh"),
                         software(120, "OpenSSH_9.6p1")]}


def test_ssh_client_changing_program_within_minutes():
    (f,) = run("software_change", **positive_tables())
    assert f.key == ("10.0.0.5", "ssh-client", "*") and f.severity == "medium"
    assert [v["version"] for v in f.metrics["versions"]] == ["OpenSSH_9.6p1", "libssh_0.9.6"]
    assert f.metrics["fastest_change_seconds"] == 60 and f.attack == ["T1036", "T1588.002"]


def test_an_upgrade_weeks_apart_is_low_and_one_version_or_an_external_server_nothing():
    (f,) = run("software_change", software=[software(0, "OpenSSH_8.9"), software(20 * 86400, "OpenSSH_9.6")])
    assert f.severity == "low" and set(f.score_parts) == {"change"}
    assert run("software_change", software=[software(i, "OpenSSH_9.6") for i in range(5)]) == []
    ext = [software(0, "OpenSSH_8.9", host="198.51.100.22", kind="ssh-server"),
           software(9, "dropbear_2022.83", host="198.51.100.22", kind="ssh-server", name="dropbear")]
    assert run("software_change", software=ext) == []
    browsers = [software(0, "Firefox/124", kind="http-browser"), software(5, "Chrome/124", kind="http-browser")]
    assert run("software_change", software=browsers) == []  # not a watched kind by default



def test_golden_slips_test15_ssh_client_version(tmp_path_factory):
    # Slips: "SSH client version changing" — OpenSSH_8.1, then OpenSSH_9.1 4 s later
    fs = analyze_capture("slips/test15-malicious-zeek", tmp_path_factory.mktemp("sw"), only=("software_change",))
    assert [(f.key, f.severity, f.metrics["fastest_change_seconds"]) for f in fs] == [
        (("192.168.1.247", "ssh-client", "*"), "low", 4.0)]
    assert_golden("software_change-slips-test15", fs)
