"""Which ``resolv.conf`` the cells read (``runtime/sandbox/network.py``)."""

from __future__ import annotations

from pathlib import Path

from lambdad.runtime.sandbox.network import cells_resolv_conf


def _write(path: Path, *servers: str) -> Path:
    path.write_text("".join(f"nameserver {server}\n" for server in servers))
    return path


def test_a_host_resolver_off_loopback_is_read_as_it_is(tmp_path: Path) -> None:
    """A host whose nameservers are reachable from a cell: cells read the host's file."""
    host = _write(tmp_path / "host", "10.0.0.2", "127.0.0.53")
    upstream = _write(tmp_path / "upstream", "10.0.0.3")
    assert cells_resolv_conf("", host, upstream) is None


def test_a_loopback_only_host_resolver_gives_cells_its_upstream_servers(tmp_path: Path) -> None:
    """systemd-resolved's stub (127.0.0.53) is out of a cell's reach: cells read the file of
    the upstream servers it forwards to."""
    host = _write(tmp_path / "host", "127.0.0.53")
    upstream = _write(tmp_path / "upstream", "192.0.2.1", "::1")
    assert cells_resolv_conf("", host, upstream) == upstream


def test_without_reachable_upstream_servers_cells_keep_the_hosts_file(tmp_path: Path) -> None:
    """No upstream file, or one naming only loopback servers: nothing better to give."""
    host = _write(tmp_path / "host", "127.0.0.53")
    assert cells_resolv_conf("", host, tmp_path / "missing") is None
    upstream = _write(tmp_path / "upstream", "127.0.0.1")
    assert cells_resolv_conf("", host, upstream) is None


def test_the_setting_wins(tmp_path: Path) -> None:
    """``LAMBDAD_CELL_RESOLV_CONF`` names the file, whatever the host's says."""
    host = _write(tmp_path / "host", "10.0.0.2")
    assert cells_resolv_conf("/srv/resolv.conf", host) == Path("/srv/resolv.conf")
