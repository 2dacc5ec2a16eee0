"""NIST CAVP AES-GCM vectors from the cryptography-vectors package (96-bit IVs)."""

from pathlib import Path

import cryptography_vectors

GCM_DIR = Path(cryptography_vectors.__file__).parent / "ciphers" / "AES" / "GCM"
CAVP_FILES = ["gcmEncryptExtIV128.rsp", "gcmEncryptExtIV256.rsp",
              "gcmDecrypt128.rsp", "gcmDecrypt256.rsp"]


def load_cavp(name):
    """All vectors of one .rsp file with a 96-bit IV, as dicts of bytes."""
    out, cur, ivlen = [], None, None
    for line in (GCM_DIR / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            cur = None
        if line.startswith("[IVlen"):
            ivlen = int(line.split("=")[1].strip(" ]"))
        elif line.startswith("Count"):
            cur = {"fail": False}
            if ivlen == 96:
                out.append(cur)
        elif cur is not None and "=" in line and not line.startswith("["):
            k, v = (s.strip() for s in line.split("=", 1))
            cur[k.lower()] = bytes.fromhex(v)
        elif cur is not None and line == "FAIL":
            cur["fail"] = True
    for v in out:
        v.setdefault("pt", b"")
        v.setdefault("ct", b"")
    return out
