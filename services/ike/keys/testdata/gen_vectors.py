#!/usr/bin/env python3
# Independent reference for the key schedule KATs in keys_test.go: a separate
# implementation in Python's hmac/hashlib, written from RFC 7296 2.13-2.17,
# RFC 9370 2.2 and RFC 9242 3.3 without looking at the Go code.
# Run: python3 testdata/gen_vectors.py > testdata/vectors.txt
import hashlib, hmac, struct

H = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}

def prf(h, k, d): return hmac.new(k, d, H[h]).digest()

def prfplus(h, k, s, n):
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = prf(h, k, t + s + bytes([i])); out += t; i += 1
    return out[:n]

def out(name, v): print(f"{name} {v.hex()}")

ni, nr = bytes([0x11]) * 32, bytes([0x22]) * 32
g0, g1 = bytes([0x33]) * 32, bytes([0x44]) * 32   # x25519 and ML-KEM shared secrets
spii, spir = 0x0102030405060708, 0x1112131415161718
spis = struct.pack(">QQ", spii, spir)

out("prfplus_sha256", prfplus("sha256", bytes(range(32)), b"seed" * 10, 100))
for h in ("sha256", "sha384", "sha512"):
    n = H[h]().digest_size
    skeyseed = prf(h, ni + nr, g0)
    out(f"{h}_skeyseed0", skeyseed)
    km = prfplus(h, skeyseed, ni + nr + spis, 3 * n + 2 * 36)
    d, ei, er, pi, pr = km[:n], km[n:n+36], km[n+36:n+72], km[n+72:2*n+72], km[2*n+72:]
    for k, v in (("d", d), ("ei", ei), ("er", er), ("pi", pi), ("pr", pr)):
        out(f"{h}_sk{k}0", v)
    # after IKE_INTERMEDIATE 1 (RFC 9370): SKEYSEED(1) = prf(SK_d(0), SK(1) | Ni | Nr)
    skeyseed1 = prf(h, d, g1 + ni + nr)
    out(f"{h}_skeyseed1", skeyseed1)
    km1 = prfplus(h, skeyseed1, ni + nr + spis, 3 * n + 2 * 36)
    out(f"{h}_skd1", km1[:n]); out(f"{h}_skpi1", km1[n+72:2*n+72])
    # IntAuth_i1 over an IKE_INTERMEDIATE request, keyed with SK_pi(0).
    plain = bytes([0, 0, 0, 8, 0, 36, 0, 0]) + b"\x99" * 4  # a KE payload body
    length = 28 + 4 + len(plain)
    hdr = struct.pack(">QQBBBBII", spii, spir, 46, 0x20, 43, 0x08, 1, length)
    sk = struct.pack(">BBH", 34, 0, 4 + len(plain))
    inta_i1 = prf(h, pi, hdr + sk + plain)
    out(f"{h}_intauth_i1", inta_i1)
    inta_i2 = prf(h, km1[n+72:2*n+72], inta_i1 + hdr + sk + plain)
    out(f"{h}_intauth_i2", inta_i2)
    # PSK AUTH with the IntAuth suffix and IKE_AUTH message ID 2.
    real1, idbody = b"\xaa" * 100, bytes([2, 0, 0, 0]) + b"branch.example"
    octets = real1 + nr + prf(h, pi, idbody) + inta_i1 + b"\x55" * n + struct.pack(">I", 2)
    out(f"{h}_pskauth", prf(h, prf(h, b"0123456789abcdef", b"Key Pad for IKEv2"), octets))
    # Child SA KEYMAT with KE and one ADDKE, and without any KE.
    out(f"{h}_keymat_ke", prfplus(h, d, g0 + ni + nr + g1, 72))
    out(f"{h}_keymat_noke", prfplus(h, d, ni + nr, 72))
    # IKE rekey SKEYSEED
    out(f"{h}_skeyseed_rekey", prf(h, d, g0 + ni + nr + g1))
