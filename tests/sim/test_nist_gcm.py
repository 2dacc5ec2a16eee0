"""NIST CAVP AES-GCM vectors (gcmEncryptExtIV / gcmDecrypt, 128- and 256-bit
keys, 96-bit IVs: the IV length IPsec uses, salt || explicit IV) through the
model's crypto layer latchnic.sim.crypto.GcmKey.

Every vector of those files is checked: seal with the vector's tag length
(Taglen/8: 16 down to 4 bytes), open with the truncated tag, the FAIL vectors
of the decrypt files must not open, and for empty plaintexts with a 16-byte
tag the GMAC entry points must agree. The vectors come from the
`cryptography-vectors` package; the .rsp format is parsed here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

cryptography_vectors = pytest.importorskip("cryptography_vectors")

from latchnic.sim.crypto import GcmKey  # noqa: E402

GCM_DIR = Path(cryptography_vectors.__file__).parent / "ciphers" / "AES" / "GCM"


def parse_rsp(path: Path) -> list[dict]:
    """The vectors of a CAVP .rsp file. Each vector is a dict of its fields
    (hex strings decoded to bytes) plus the section parameters in brackets
    (as ints) and "fail": True for the decrypt vectors marked FAIL."""
    vectors, params, cur = [], {}, None
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            name, _, value = line[1:-1].partition("=")
            params[name.strip()] = int(value.strip())
            cur = None
            continue
        if line == "FAIL":
            assert cur is not None, f"{path.name}:{lineno}: FAIL outside a vector"
            cur["fail"] = True
            continue
        name, eq, value = line.partition("=")
        assert eq, f"{path.name}:{lineno}: cannot parse {line!r}"
        name, value = name.strip(), value.strip()
        if name == "Count":
            cur = {"params": dict(params), "Count": int(value), "fail": False, "line": lineno}
            vectors.append(cur)
            continue
        assert cur is not None, f"{path.name}:{lineno}: field before the first Count"
        cur[name] = bytes.fromhex(value)
    return vectors


def select(path: Path, keylen: int) -> list[dict]:
    vecs = [v for v in parse_rsp(path) if v["params"]["IVlen"] == 96]
    assert vecs, f"no 96-bit-IV vectors in {path.name}"
    for v in vecs:
        p = v["params"]
        assert p["Keylen"] == keylen and len(v["Key"]) * 8 == keylen
        assert len(v["IV"]) == 12
        assert len(v["AAD"]) * 8 == p["AADlen"] and len(v["Tag"]) * 8 == p["Taglen"]
    return vecs


def where(path: Path, v: dict) -> str:
    p = v["params"]
    return (f"{path.name}:{v['line']} Count={v['Count']} PTlen={p['PTlen']} AADlen={p['AADlen']} "
            f"Taglen={p['Taglen']}")


@pytest.mark.parametrize("keylen", [128, 256])
def test_encrypt_vectors(keylen):
    path = GCM_DIR / f"gcmEncryptExtIV{keylen}.rsp"
    vecs = select(path, keylen)
    failures = []
    for v in vecs:
        g = GcmKey(v["Key"])
        tag_len = len(v["Tag"])
        assert len(v["PT"]) == len(v["CT"])
        sealed = g.seal(v["IV"], v["PT"], v["AAD"], tag_len)
        if sealed != v["CT"] + v["Tag"]:
            failures.append(f"{where(path, v)}: seal gave {sealed.hex()}")
        opened = g.open(v["IV"], v["CT"], v["Tag"], v["AAD"])
        if opened != v["PT"]:
            failures.append(f"{where(path, v)}: open gave {opened!r}")
        # a tag with its last bit flipped must not open
        bad = v["Tag"][:-1] + bytes([v["Tag"][-1] ^ 1])
        if g.open(v["IV"], v["CT"], bad, v["AAD"]) is not None:
            failures.append(f"{where(path, v)}: opened with a corrupted tag")
        if not v["PT"] and tag_len == 16:
            if g.gmac(v["IV"], v["AAD"]) != v["Tag"]:
                failures.append(f"{where(path, v)}: gmac differs")
            if not g.gmac_ok(v["IV"], v["AAD"], v["Tag"]) or g.gmac_ok(v["IV"], v["AAD"], bad):
                failures.append(f"{where(path, v)}: gmac_ok wrong")
    tag_lens = {len(v["Tag"]) for v in vecs}
    assert tag_lens >= {4, 8, 12, 13, 14, 15, 16}, tag_lens
    assert not failures, f"{len(failures)} of {len(vecs)} vectors failed:\n" + "\n".join(failures[:20])


@pytest.mark.parametrize("keylen", [128, 256])
def test_decrypt_vectors(keylen):
    path = GCM_DIR / f"gcmDecrypt{keylen}.rsp"
    vecs = select(path, keylen)
    failures = []
    n_fail = 0
    for v in vecs:
        g = GcmKey(v["Key"])
        opened = g.open(v["IV"], v["CT"], v["Tag"], v["AAD"])
        if v["fail"]:
            n_fail += 1
            assert "PT" not in v
            if opened is not None:
                failures.append(f"{where(path, v)}: FAIL vector opened to {opened.hex()}")
            if not v["CT"] and len(v["Tag"]) == 16 and g.gmac_ok(v["IV"], v["AAD"], v["Tag"]):
                failures.append(f"{where(path, v)}: FAIL vector passed gmac_ok")
            continue
        if opened != v["PT"]:
            failures.append(f"{where(path, v)}: open gave {opened!r}, want {v['PT'].hex()}")
        sealed = g.seal(v["IV"], v["PT"], v["AAD"], len(v["Tag"]))
        if sealed != v["CT"] + v["Tag"]:
            failures.append(f"{where(path, v)}: seal gave {sealed.hex()}")
    assert n_fail > 0 and n_fail < len(vecs)
    assert not failures, f"{len(failures)} of {len(vecs)} vectors failed:\n" + "\n".join(failures[:20])
