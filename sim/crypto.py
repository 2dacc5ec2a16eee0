"""The model's crypto layer: AES-GCM and GMAC on top of `cryptography`.

IPsec needs three operations (RFC 4106, RFC 4543): seal/open with possibly
truncated tags, and a tag over AAD only (GMAC). `cryptography`'s AESGCM makes
16-byte tags; truncated tags are checked through the lower-level GCM mode,
which accepts a minimum tag length.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MIN_TAG = 4


class GcmKey:
    def __init__(self, key: bytes):
        if len(key) not in (16, 24, 32):
            raise ValueError(f"AES keys are 16, 24 or 32 bytes, got {len(key)}")
        self.key = key
        self._aead = AESGCM(key)

    def seal(self, nonce: bytes, plaintext: bytes, aad: bytes, tag_len: int = 16) -> bytes:
        """Ciphertext || tag truncated to tag_len."""
        out = self._aead.encrypt(nonce, plaintext, aad)
        return out if tag_len == 16 else out[:len(out) - 16 + tag_len]

    def open(self, nonce: bytes, ciphertext: bytes, tag: bytes, aad: bytes) -> bytes | None:
        """Plaintext, or None when the tag does not verify."""
        try:
            if len(tag) == 16:
                return self._aead.decrypt(nonce, ciphertext + tag, aad)
            if len(tag) < MIN_TAG:
                return None
            dec = Cipher(algorithms.AES(self.key), modes.GCM(nonce, tag, min_tag_length=len(tag))).decryptor()
            dec.authenticate_additional_data(aad)
            return dec.update(ciphertext) + dec.finalize()
        except InvalidTag:
            return None

    def gmac(self, nonce: bytes, aad: bytes) -> bytes:
        """The 16-byte GMAC tag: GCM with empty plaintext."""
        return self._aead.encrypt(nonce, b"", aad)

    def gmac_ok(self, nonce: bytes, aad: bytes, tag: bytes) -> bool:
        return self.open(nonce, b"", tag, aad) is not None
