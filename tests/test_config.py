"""Configuration: parsing, errors, and documentation that cannot drift."""

from __future__ import annotations

import pytest

from abfluss import config
from abfluss.errors import ConfigError
from conftest import ROOT


def test_every_key_is_documented():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for key in config.KEYS:
        assert f"`{key.name}`" in doc, f"{key.name} missing from docs/configuration.md"


def test_defaults():
    c = config.parse({})
    assert c.internal == config.DEFAULT_INTERNAL
    assert c.tenants == {} and c.allow_domains == ()


def test_full_example_from_the_docs_parses():
    import tomllib

    doc = (ROOT / "docs" / "configuration.md").read_text()
    example = doc.split("```toml", 1)[1].split("```", 1)[0]
    c = config.parse(tomllib.loads(example))
    assert c.tenants["kasse_nord"] == ("10.10.0.0/16",)
    assert c.assets["backup"] == ("10.10.9.20/32",)
    assert c.allow_domains == ("*.windowsupdate.com", "telemetry.example-vendor.test")
    assert c.default_sensor == "dc1-tap"


@pytest.mark.parametrize("data,message", [
    ({"netwerks": {}}, "unknown section [netwerks]"),
    ({"networks": {"internal": ["10.0.0.0/33"]}}, "networks.internal: '10.0.0.0/33' is not an IP network"),
    ({"networks": {"internal": "10.0.0.0/8"}}, "networks.internal must be a list"),
    ({"networks": {"intern": []}}, "unknown key networks.intern"),
    ({"tenants": {"a": {"nets": []}}}, "unknown key tenants.a.nets"),
])
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        config.parse(data, "x.toml")


def test_invalid_toml_is_one_line(tmp_path):
    p = tmp_path / "abfluss.toml"
    p.write_text("[networks\ninternal = 1")
    with pytest.raises(ConfigError, match="abfluss.toml: invalid TOML"):
        config.load(p)


def test_pack_orders_like_addresses():
    assert config.pack("10.0.0.1") < config.pack("10.0.0.2") < config.pack("10.0.1.0")
    assert config.network_range("10.0.0.0/8") == (config.pack("10.0.0.0"), config.pack("10.255.255.255"))


def test_asset_tags_reach_the_address_view(tmp_path):
    import abfluss
    from conftest import EXAMPLES

    (tmp_path / "abfluss.toml").write_text('[assets]\nepa = ["10.10.0.11/32"]\nkim = ["10.10.0.0/24"]\n')
    ws = abfluss.open_workspace(tmp_path, write=True)
    try:
        abfluss.ingest_paths(ws, [EXAMPLES / "demo.pcap"])
        abfluss.refresh(ws)
        tags = dict(ws.con.execute("SELECT addr, tags FROM address_class WHERE len(tags) > 0").fetchall())
    finally:
        ws.close()
    assert tags["10.10.0.11"] == ["epa", "kim"] and tags["10.10.0.12"] == ["kim"]
